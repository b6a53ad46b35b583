//! Runs the [`Renderer`] on a host: every change of the gossip view is rendered; a changed
//! file is written atomically and the balancer is told to reload (the lab's `s6-svc -h`).

use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::watch;

use super::core::Renderer;
use crate::gossip::driver::View;
use crate::gossip::{NodeState, Status};
use crate::host::{Event, HostEnv};
use crate::net::Net;

/// Where the renderer reads and writes.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// Template file name, for error messages.
    pub template_file: String,
    /// Template text.
    pub template_text: String,
    /// Output path on the host's disk.
    pub output: PathBuf,
    /// A bug planted for the simulator's mutation tests ([`crate::node::PlantedBugs`]): the
    /// first live backend is left out of every rendering.
    pub drops_a_backend: bool,
    /// A bug planted for the same tests: dead members are rendered as if alive.
    pub keeps_dead: bool,
}

/// Renders on every view change until the view's sender is gone.
pub async fn run<N: Net>(
    env: HostEnv<N>,
    settings: RenderSettings,
    mut view: watch::Receiver<View>,
    reload: Rc<watch::Sender<u64>>,
) -> Result<(), String> {
    let mut renderer =
        Renderer::new(&settings.template_file, &settings.template_text).map_err(|e| e.to_string())?;
    if let Ok(existing) = env.disk().read(&settings.output) {
        renderer.record_written(existing);
    }
    loop {
        let mut current = view.borrow_and_update().clone();
        if settings.keeps_dead {
            current.iter_mut().for_each(|m| m.status = Status::Alive);
        }
        if settings.drops_a_backend {
            let backend = |m: &NodeState| m.tags.get("role").is_some_and(|r| r == "backend");
            if let Some(first) = current.iter().position(|m| backend(m) && !m.status.is_gone()) {
                current.remove(first);
            }
        }
        match renderer.update(&current) {
            Ok(Some(output)) => match env.disk().write_atomic(&settings.output, &output.bytes) {
                Ok(()) => {
                    renderer.record_written(output.bytes.clone());
                    env.observe(Event::Rendered {
                        path: settings.output.display().to_string(),
                        backends: output.addresses.iter().map(|a| a.host.clone()).collect(),
                        bytes: output.bytes.len() as u32,
                    });
                    reload.send_modify(|generation| *generation += 1);
                }
                Err(error) => env.observe(Event::RenderFailed {
                    error: format!("{}: {error}", settings.output.display()),
                }),
            },
            Ok(None) => {}
            Err(error) => env.observe(Event::RenderFailed { error: error.to_string() }),
        }
        if view.changed().await.is_err() {
            return Err("membership view closed".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::gossip::{NodeState, Status};
    use crate::host::testing::{host, run_paused};
    use crate::host::{Disk, MemoryDisk};

    /// A disk whose writes fail while `broken` is set.
    #[derive(Default)]
    struct FlakyDisk {
        inner: MemoryDisk,
        broken: Cell<bool>,
    }

    impl Disk for FlakyDisk {
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.inner.read(path)
        }
        fn write_atomic(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
            if self.broken.get() {
                return Err(std::io::Error::other("disk full"));
            }
            self.inner.write_atomic(path, bytes)
        }
    }

    fn backend(name: &str, last: u8) -> NodeState {
        NodeState {
            name: name.into(),
            addr: ([10, 0, 0, last], 7946).into(),
            incarnation: 0,
            status: Status::Alive,
            tags: BTreeMap::from([("role".into(), "backend".into())]),
        }
    }

    #[test]
    fn renders_on_change_keeps_the_old_file_when_a_write_fails_and_retries_on_the_next_change() {
        run_paused(async {
            let disk = Rc::new(FlakyDisk::default());
            let (env, recorded) = host(disk.clone());
            let settings = RenderSettings {
                template_file: "t.hb".into(),
                template_text: "{{#each addresses}}{{host}} {{/each}}".into(),
                output: "/cfg".into(),
                drops_a_backend: false,
                keeps_dead: false,
            };
            let (view, view_rx) = watch::channel(vec![backend("s1", 2)]);
            let (reload, reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, settings, view_rx, Rc::new(reload)));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 ");
            assert_eq!(*reload_rx.borrow(), 1);

            view.send_replace(vec![backend("s1", 2)]);
            tokio::task::yield_now().await;
            assert_eq!(*reload_rx.borrow(), 1, "same bytes: no write, no reload");

            disk.broken.set(true);
            view.send_replace(vec![backend("s1", 2), backend("s2", 3)]);
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 ", "the old file is kept");
            assert_eq!(*reload_rx.borrow(), 1);

            disk.broken.set(false);
            view.send_replace(vec![backend("s1", 2), backend("s2", 3)]);
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 s2 ");
            assert_eq!(*reload_rx.borrow(), 2);
            task.abort();
            let kinds: Vec<&str> = recorded.0.borrow().iter().map(|(_, e)| e.kind()).collect();
            assert_eq!(kinds, ["rendered", "render-failed", "rendered"]);
        });
    }
}
