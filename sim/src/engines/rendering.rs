//! The balancer node's renderer for the event engine: consul-template's quiescence, the
//! render core, the balancer's own validation and an atomic write, with the same trace
//! records as the renderer's driver (`src/render/driver.rs`). Only the fixed pipeline: the
//! lab's in-place writes and legacy reloads need turmoil.

use std::time::Duration;

use rollcall::gossip::driver::View;
use rollcall::host::Event;
use rollcall::render::core::{Member, Renderer};
use rollcall::render::driver::{RenderSettings, holds_back, validate, with_planted_bugs};
use rollcall::render::quiescence::Quiescence;

/// One run of the renderer service on the balancer host.
pub struct Rendering {
    settings: RenderSettings,
    renderer: Renderer,
    quiescence: Quiescence,
    /// The gossip view as of the last render, or as the last agent run left it (empty at
    /// boot, as the node's watch).
    view: View,
    /// Whether a file is there to keep (see [`holds_back`]).
    written: bool,
    /// When a render check is queued, so that one is queued at a time.
    queued: Option<Duration>,
}

impl Rendering {
    /// Starts the renderer with the file the disk holds (`None`: no file yet); errors name
    /// the template, as the service's exit status would.
    pub fn start(settings: RenderSettings, on_disk: Option<&[u8]>) -> Result<Self, String> {
        let mut renderer =
            Renderer::new(&settings.template_file, &settings.template_text).map_err(|e| e.to_string())?;
        if let Some(bytes) = on_disk {
            renderer.record_written(bytes.to_vec());
        }
        let quiescence = Quiescence::new(settings.options.wait);
        let written = on_disk.is_some();
        Ok(Self { settings, renderer, quiescence, view: View::default(), written, queued: None })
    }

    /// The view as it stands when the renderer starts (rendered at once, not a change), or as
    /// the last agent run left it.
    pub fn set_view(&mut self, view: View) {
        self.view = view;
    }

    /// The host's gossip view changed at `now`; returns when to check for a render, if a new
    /// check must be queued. The view itself is only read when a render is due (see
    /// [`Self::check`]): at 10,000 nodes a copy per change would be nodes squared.
    pub fn view_changed(&mut self, now: Duration) -> Option<Duration> {
        self.quiescence.changed(now);
        self.queue()
    }

    /// A queued check at `now`: renders if the quiescence wait is over, with the view
    /// `current` gives (`None`: no agent runs, the last one published stands). Returns the
    /// records to make, the bytes written (if any), and when to check again (if a new check
    /// must be queued).
    pub fn check(
        &mut self,
        now: Duration,
        current: impl FnOnce() -> Option<View>,
    ) -> (Vec<Event>, Option<Vec<u8>>, Option<Duration>) {
        self.queued = None;
        if !self.quiescence.take_due(now) {
            return (Vec::new(), None, self.queue());
        }
        if let Some(view) = current() {
            self.view = view;
        }
        let (events, written) = self.render();
        (events, written, self.queue())
    }

    fn queue(&mut self) -> Option<Duration> {
        let due = self.quiescence.due()?;
        if self.queued.is_some_and(|queued| queued <= due) {
            return None;
        }
        self.queued = Some(due);
        Some(due)
    }

    /// Renders the current view (at start, and when a check is due); a changed, valid
    /// rendering is written.
    pub fn render(&mut self) -> (Vec<Event>, Option<Vec<u8>>) {
        if holds_back(&self.settings, self.written, &self.view) {
            return (Vec::new(), None);
        }
        self.written = true;
        let path = self.settings.output.display().to_string();
        let current = with_planted_bugs(&self.settings, self.view.members.clone());
        let members: Vec<Member> = current.iter().map(Member::from).collect();
        let output = match self.renderer.update(&members) {
            Ok(Some(output)) => output,
            Ok(None) => return (Vec::new(), None),
            Err(error) => return (vec![Event::RenderFailed { error: error.to_string() }], None),
        };
        if let Err(error) = validate(&self.settings, &path, &output) {
            return (vec![Event::RenderRejected { error }], None);
        }
        self.renderer.record_written(output.bytes.clone());
        let backends = output.addresses.iter().map(|a| a.host.clone()).collect();
        let events = vec![
            Event::RenderStarted { path: path.clone() },
            Event::Rendered { path, backends, bytes: output.bytes.len() as u32 },
        ];
        (events, Some(output.bytes))
    }
}
