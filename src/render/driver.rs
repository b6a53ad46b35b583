//! Runs the [`Renderer`] on a host: every change of the gossip view is rendered; a changed
//! file is written atomically and the balancer is told to reload (the lab's `s6-svc -h`).

use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::watch;

use super::core::Renderer;
use crate::gossip::driver::View;
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
        let current = view.borrow_and_update().clone();
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
