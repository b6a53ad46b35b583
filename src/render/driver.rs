//! Runs the [`Renderer`] on a host, as consul-template runs a template: a change of the
//! gossip view renders once the quiescence wait allows it; a rendering whose bytes differ
//! from the file is validated with the balancer's own parser (a rejected one keeps the old
//! file and the running balancer), the old file is kept as a backup if asked, the new one
//! is written atomically, and the balancer is told to reload (the lab's `s6-svc -h`).

use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::watch;

use super::core::{Member, Output, Renderer};
use super::quiescence::{Quiescence, Wait};
use crate::gossip::driver::View;
use crate::gossip::{NodeState, Status};
use crate::host::{Event, HostEnv};
use crate::net::Net;

/// consul-template's options for one template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// `wait = "min:max"` (zero: render at once).
    pub wait: Wait,
    /// Check a rendering with the balancer's parser before it replaces the file.
    pub validate: bool,
    /// Keep the replaced file as `<output>.bak` (consul-template's `backup`).
    pub backup: bool,
    /// Write the way the lab's handler does, `handlebars ... > haproxy.cfg`: the live file is
    /// truncated first and filled [`IN_PLACE_RENDER_TIME`] later, when the rendering process
    /// has started and printed. A reader or a crash in between sees an empty file.
    pub in_place: bool,
    /// Keep a file already written while the gossip agent's view is not synced (a restarted
    /// agent lists only itself until it has heard from a peer), as consul-template waits
    /// for its data. The lab's handler renders whatever `serf members` says.
    pub wait_for_sync: bool,
}

impl Default for RenderOptions {
    /// No wait, validation on, no backup, atomic writes.
    fn default() -> Self {
        Self { wait: Wait::default(), validate: true, backup: false, in_place: false, wait_for_sync: true }
    }
}

/// How long the lab's handler leaves the live file truncated: the start-up of
/// `handlebars-cmd` (a Node.js program) before it prints the rendering. Not measured here
/// (Node.js is not installed on our machines); Node.js itself takes tens of milliseconds to
/// start, and loading handlebars more.
pub const IN_PLACE_RENDER_TIME: std::time::Duration = std::time::Duration::from_millis(200);

/// Where the renderer reads and writes.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// Template file name, for error messages.
    pub template_file: String,
    /// Template text.
    pub template_text: String,
    /// Output path on the host's disk.
    pub output: PathBuf,
    /// consul-template's options.
    pub options: RenderOptions,
    /// A command that must accept each rendering, given on its standard input, before it
    /// replaces the file (`haproxy -c -q -f /dev/stdin`); real processes, real mode only.
    pub check_command: Option<Vec<String>>,
    /// A bug planted for the simulator's mutation tests ([`crate::node::PlantedBugs`]): the
    /// first live backend is left out of every rendering.
    pub drops_a_backend: bool,
    /// A bug planted for the same tests: dead members are rendered as if alive.
    pub keeps_dead: bool,
}

/// Renders the view as it is at start, then after every quiet-enough change, until the
/// view's sender is gone.
pub async fn run<N: Net>(
    env: HostEnv<N>,
    settings: RenderSettings,
    mut view: watch::Receiver<View>,
    reload: Rc<watch::Sender<u64>>,
) -> Result<(), String> {
    let mut renderer =
        Renderer::new(&settings.template_file, &settings.template_text).map_err(|e| e.to_string())?;
    let mut written = false;
    if let Ok(existing) = env.disk().read(&settings.output) {
        renderer.record_written(existing);
        written = true;
    }
    let mut quiescence = Quiescence::new(settings.options.wait);
    // The view as it is at start renders at once; later changes wait for quiet.
    let mut first = true;
    loop {
        let due = std::mem::take(&mut first) || quiescence.take_due(env.now());
        // Marked seen even when held back: the next change wakes us, not this one again.
        let current = due.then(|| view.borrow_and_update().clone());
        if let Some(current) = current.filter(|current| !holds_back(&settings, written, current)) {
            written = true;
            let current = with_planted_bugs(&settings, current.members);
            let members: Vec<Member> = current.iter().map(Member::from).collect();
            render_once(&env, &settings, &mut renderer, &members, &reload).await;
        }
        let wait = quiescence.due().map(|due| due.saturating_sub(env.now()));
        tokio::select! {
            biased;
            changed = view.changed() => {
                if changed.is_err() {
                    return Err("membership view closed".into());
                }
                quiescence.changed(env.now());
            }
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}

/// Whether a view must not replace what was written: it is not synced, and there is a file
/// to keep (a first boot renders what it has).
pub fn holds_back(settings: &RenderSettings, written: bool, view: &View) -> bool {
    settings.options.wait_for_sync && written && !view.synced
}

/// The view as the renderer sees it, with the bugs `settings` plants (none in production).
pub fn with_planted_bugs(settings: &RenderSettings, mut current: Vec<NodeState>) -> Vec<NodeState> {
    if settings.keeps_dead {
        current.iter_mut().for_each(|m| m.status = Status::Alive);
    }
    if settings.drops_a_backend {
        let backend = |m: &NodeState| m.tags.get("role").is_some_and(|r| r == "backend");
        if let Some(first) = current.iter().position(|m| backend(m) && !m.status.is_gone()) {
            current.remove(first);
        }
    }
    current
}

/// Renders `current`; a changed, valid rendering replaces the file and reloads the balancer.
async fn render_once<N: Net>(
    env: &HostEnv<N>,
    settings: &RenderSettings,
    renderer: &mut Renderer,
    current: &[Member],
    reload: &watch::Sender<u64>,
) {
    let path = settings.output.display().to_string();
    let output = match renderer.update(current) {
        Ok(Some(output)) => output,
        Ok(None) => return,
        Err(error) => return env.observe(Event::RenderFailed { error: error.to_string() }),
    };
    if let Err(error) = validate(settings, &path, &output) {
        return env.observe(Event::RenderRejected { error });
    }
    if let Some(command) = &settings.check_command {
        if let Err(error) = run_check(command, &output.bytes).await {
            return env.observe(Event::RenderRejected { error });
        }
    }
    if settings.options.backup {
        if let Ok(old) = env.disk().read(&settings.output) {
            let backup = PathBuf::from(format!("{path}.bak"));
            if let Err(error) = env.disk().write_atomic(&backup, &old) {
                return env.observe(Event::RenderFailed { error: format!("{}: {error}", backup.display()) });
            }
        }
    }
    env.observe(Event::RenderStarted { path: path.clone() });
    match write(env, settings, &output.bytes).await {
        Ok(()) => {
            renderer.record_written(output.bytes.clone());
            env.observe(Event::Rendered {
                path,
                backends: output.addresses.iter().map(|a| a.host.clone()).collect(),
                bytes: output.bytes.len() as u32,
            });
            reload.send_modify(|generation| *generation += 1);
        }
        Err(error) => env.observe(Event::RenderFailed { error: format!("{path}: {error}") }),
    }
}

/// Writes the rendering: atomically, or in place as the lab does.
async fn write<N: Net>(env: &HostEnv<N>, settings: &RenderSettings, bytes: &[u8]) -> std::io::Result<()> {
    if !settings.options.in_place {
        return env.disk().write_atomic(&settings.output, bytes);
    }
    env.disk().write_in_place(&settings.output, b"")?;
    tokio::time::sleep(IN_PLACE_RENDER_TIME).await;
    env.disk().write_in_place(&settings.output, bytes)
}

/// How long a check command may take (consul-template's command timeout).
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `command` with the rendering on its standard input; its verdict is its exit code,
/// and its complaint the last lines it wrote to standard error.
async fn run_check(command: &[String], bytes: &[u8]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let Some((program, args)) = command.split_first() else { return Ok(()) };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let mut stdin = child.stdin.take().ok_or("no standard input")?;
    let checked = async {
        // A checker that stops reading early has already made up its mind.
        let _ = stdin.write_all(bytes).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(CHECK_TIMEOUT, checked).await {
        Ok(output) => output.map_err(|error| format!("{program}: {error}"))?,
        Err(_) => {
            // What the checker started dies with it (kill_on_drop reaches the checker alone).
            if let Some(group) = group {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            return Err(format!("{program}: no verdict within {} s", CHECK_TIMEOUT.as_secs()));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let alerts: Vec<&str> = said.lines().filter(|line| line.contains("ALERT")).collect();
    let shown = if alerts.is_empty() { said.trim().to_string() } else { alerts.join("; ") };
    Err(format!("{} rejected it ({}): {shown}", command.join(" "), output.status))
}

/// The balancer's own verdict on a rendering: only errors reject it (warnings do not).
pub fn validate(settings: &RenderSettings, path: &str, output: &Output) -> Result<(), String> {
    if !settings.options.validate {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.bytes);
    crate::balancer::config::parse(path, &text).map(|_| ()).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::path::Path;

    use std::time::Duration;

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
        fn write_in_place(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
            self.write_atomic(path, bytes)
        }
    }

    /// Renders the backends' hosts to `/cfg`, without validation.
    fn addresses_to_cfg() -> RenderSettings {
        RenderSettings {
            template_file: "t.hb".into(),
            template_text: "{{#each addresses}}{{host}} {{/each}}".into(),
            output: "/cfg".into(),
            options: RenderOptions { validate: false, ..RenderOptions::default() },
            check_command: None,
            drops_a_backend: false,
            keeps_dead: false,
        }
    }

    fn synced(members: Vec<NodeState>) -> View {
        View { members, synced: true }
    }

    fn unsynced(members: Vec<NodeState>) -> View {
        View { members, synced: false }
    }

    /// Found by `explore` on lab-swarm (seed 27): ha's agent left and was started again; its
    /// first view listed only itself, the renderer wrote an empty backend list, and a
    /// request got 503 before the rejoin's push-pull came back 7 ms later.
    #[test]
    fn a_restarted_agents_view_does_not_replace_the_file_until_it_is_synced() {
        run_paused(async {
            let disk = Rc::new(FlakyDisk::default());
            disk.write_atomic(Path::new("/cfg"), b"s1 s2 ").unwrap();
            let (env, _recorded) = host(disk.clone());
            let settings = addresses_to_cfg();
            let (view, view_rx) = watch::channel(unsynced(Vec::new()));
            let (reload, reload_rx) = watch::channel(0u64);
            let lab = RenderSettings {
                options: RenderOptions { wait_for_sync: false, ..settings.options },
                ..settings.clone()
            };
            let task = tokio::task::spawn_local(run(env.clone(), settings, view_rx, Rc::new(reload)));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 s2 ", "kept while unsynced");
            view.send_replace(unsynced(vec![backend("s1", 2)]));
            tokio::task::yield_now().await;
            assert_eq!(*reload_rx.borrow(), 0);
            view.send_replace(synced(vec![backend("s1", 2)]));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 ");
            assert_eq!(*reload_rx.borrow(), 1);
            task.abort();

            // The lab's handler renders whatever the agent lists.
            let (_view, view_rx) = watch::channel(unsynced(Vec::new()));
            let (reload, _reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, lab, view_rx, Rc::new(reload)));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"");
            task.abort();
        });
    }

    #[test]
    fn a_first_boot_renders_its_view_unsynced() {
        run_paused(async {
            let disk = Rc::new(FlakyDisk::default());
            let (env, _recorded) = host(disk.clone());
            let settings = addresses_to_cfg();
            let (_view, view_rx) = watch::channel(unsynced(Vec::new()));
            let (reload, reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, settings, view_rx, Rc::new(reload)));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"", "nothing to keep: it renders");
            assert_eq!(*reload_rx.borrow(), 1);
            task.abort();
        });
    }

    fn backend(name: &str, last: u8) -> NodeState {
        NodeState {
            name: name.into(),
            addr: ([10, 0, 0, last], 7946).into(),
            incarnation: 0,
            status: Status::Alive,
            tags: BTreeMap::from([("role".into(), "backend".into())]).into(),
        }
    }

    #[test]
    fn renders_on_change_keeps_the_old_file_when_a_write_fails_and_retries_on_the_next_change() {
        run_paused(async {
            let disk = Rc::new(FlakyDisk::default());
            let (env, recorded) = host(disk.clone());
            let settings = addresses_to_cfg();
            let (view, view_rx) = watch::channel(synced(vec![backend("s1", 2)]));
            let (reload, reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, settings, view_rx, Rc::new(reload)));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 ");
            assert_eq!(*reload_rx.borrow(), 1);

            view.send_replace(synced(vec![backend("s1", 2)]));
            tokio::task::yield_now().await;
            assert_eq!(*reload_rx.borrow(), 1, "same bytes: no write, no reload");

            disk.broken.set(true);
            view.send_replace(synced(vec![backend("s1", 2), backend("s2", 3)]));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 ", "the old file is kept");
            assert_eq!(*reload_rx.borrow(), 1);

            disk.broken.set(false);
            view.send_replace(synced(vec![backend("s1", 2), backend("s2", 3)]));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"s1 s2 ");
            assert_eq!(*reload_rx.borrow(), 2);
            task.abort();
            let kinds: Vec<&str> = recorded.0.borrow().iter().map(|(_, e)| e.kind()).collect();
            assert_eq!(
                kinds,
                [
                    "render-started",
                    "rendered",
                    "render-started",
                    "render-failed",
                    "render-started",
                    "rendered"
                ]
            );
        });
    }

    /// A valid haproxy.cfg, unless a member's name makes a `server` line unparsable.
    const CONFIG_TEMPLATE: &str = "defaults\n    mode http\n    timeout connect 1s\n    timeout server 5s\n\
        frontend web\n    bind 127.0.0.1:8080\n    default_backend nodes\n\
        backend nodes\n{{#each addresses}}    server {{host}} {{ip}}:3000\n{{/each}}";

    fn settings(options: RenderOptions) -> RenderSettings {
        RenderSettings {
            template_file: "t.hb".into(),
            template_text: CONFIG_TEMPLATE.into(),
            output: "/cfg".into(),
            options,
            check_command: None,
            drops_a_backend: false,
            keeps_dead: false,
        }
    }

    /// `wait = "500ms:2s"`: five joins 100 ms apart render once, 500 ms after the last.
    #[test]
    fn a_burst_of_joins_within_the_wait_renders_once() {
        run_paused(async {
            let disk = Rc::new(MemoryDisk::default());
            let (env, recorded) = host(disk.clone());
            let wait = Wait { min: Duration::from_millis(500), max: Duration::from_secs(2) };
            let options = RenderOptions { wait, ..RenderOptions::default() };
            let (view, view_rx) = watch::channel(synced(Vec::new()));
            let (reload, _reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, settings(options), view_rx, Rc::new(reload)));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut members = Vec::new();
            for i in 1..=5u8 {
                members.push(backend(&format!("s{i}"), i + 1));
                view.send_replace(synced(members.clone()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            task.abort();
            let renders: Vec<(Duration, usize)> = recorded
                .0
                .borrow()
                .iter()
                .filter_map(|(at, e)| match e {
                    Event::Rendered { backends, .. } => Some((*at, backends.len())),
                    _ => None,
                })
                .collect();
            assert_eq!(renders, [(Duration::ZERO, 0), (Duration::from_millis(1900), 5)]);
        });
    }

    /// A rendering the balancer's parser rejects keeps the old file and reloads nothing; a
    /// good one afterwards replaces it, leaving the previous file as the backup.
    #[test]
    fn an_invalid_rendering_is_rejected_and_the_old_file_kept() {
        run_paused(async {
            let disk = Rc::new(MemoryDisk::default());
            let (env, recorded) = host(disk.clone());
            let options = RenderOptions { backup: true, ..RenderOptions::default() };
            let (view, view_rx) = watch::channel(synced(vec![backend("s1", 2)]));
            let (reload, reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, settings(options), view_rx, Rc::new(reload)));
            tokio::task::yield_now().await;
            let good = disk.read(Path::new("/cfg")).unwrap();
            view.send_replace(synced(vec![backend("s1", 2), backend("bad name", 3)]));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), good, "the old file stays");
            assert_eq!(*reload_rx.borrow(), 1, "no reload of a rejected rendering");
            view.send_replace(synced(vec![backend("s1", 2), backend("s2", 3)]));
            tokio::task::yield_now().await;
            assert_eq!(disk.read(Path::new("/cfg.bak")).unwrap(), good, "the replaced file is the backup");
            assert_eq!(*reload_rx.borrow(), 2);
            task.abort();
            let kinds: Vec<&str> = recorded.0.borrow().iter().map(|(_, e)| e.kind()).collect();
            assert_eq!(
                kinds,
                ["render-started", "rendered", "render-rejected", "render-started", "rendered"]
            );
        });
    }

    /// The lab's way: the live file is empty for [`IN_PLACE_RENDER_TIME`], then whole; no
    /// validation, so an invalid rendering goes live.
    #[test]
    fn an_in_place_rendering_leaves_the_file_empty_while_it_is_written() {
        run_paused(async {
            let disk = Rc::new(MemoryDisk::default());
            let (env, _recorded) = host(disk.clone());
            let options = RenderOptions { in_place: true, validate: false, ..RenderOptions::default() };
            let (view, view_rx) = watch::channel(synced(vec![backend("s1", 2)]));
            let (reload, reload_rx) = watch::channel(0u64);
            let task = tokio::task::spawn_local(run(env, settings(options), view_rx, Rc::new(reload)));
            tokio::time::sleep(IN_PLACE_RENDER_TIME * 2).await;
            let first = disk.read(Path::new("/cfg")).unwrap();
            assert!(String::from_utf8_lossy(&first).contains("server s1"));
            view.send_replace(synced(vec![backend("s1", 2), backend("bad name", 3)]));
            tokio::time::sleep(IN_PLACE_RENDER_TIME / 2).await;
            assert_eq!(disk.read(Path::new("/cfg")).unwrap(), b"", "truncated, not yet written");
            tokio::time::sleep(IN_PLACE_RENDER_TIME).await;
            let second = String::from_utf8(disk.read(Path::new("/cfg")).unwrap()).unwrap();
            assert!(second.contains("server bad name"), "nothing validated it");
            assert_eq!(*reload_rx.borrow(), 2);
            task.abort();
        });
    }
}
