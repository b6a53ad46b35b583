//! SIGSTOP and SIGCONT for a service that is a task (`s6-svc -p` and `-c`): a stopped run is
//! not polled until it is continued, so it stops answering, as a stopped process does. Its
//! timers still expire meanwhile and fire together when it continues, as a stopped
//! process's do.
//!
//! Only the run's own future stops; tasks it spawned for itself (a balancer's listener, the
//! connections it serves) are not frozen with it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Whether one run is stopped, and who to wake when it continues.
#[derive(Default)]
pub struct PauseGate {
    stopped: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl PauseGate {
    /// SIGSTOP.
    pub fn stop(&self) {
        self.stopped.set(true);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.stopped.set(false);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Whether the run is stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }
}

/// A run that can be stopped and continued through its gate.
pub struct Pausable<F> {
    gate: Rc<PauseGate>,
    inner: Pin<Box<F>>,
}

impl<F> Pausable<F> {
    /// `inner`, stopped and continued through `gate`.
    pub fn new(gate: Rc<PauseGate>, inner: F) -> Self {
        Self { gate, inner: Box::pin(inner) }
    }
}

impl<F: Future> Future for Pausable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.gate.is_stopped() {
            *self.gate.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::run_paused;
    use std::time::Duration;

    /// A stopped run makes no progress; continued, it finishes.
    #[test]
    fn a_stopped_run_waits_for_its_continue() {
        run_paused(async {
            let gate = Rc::new(PauseGate::default());
            let ticks = Rc::new(Cell::new(0u32));
            let counted = ticks.clone();
            let run = Pausable::new(gate.clone(), async move {
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    counted.set(counted.get() + 1);
                }
            });
            let task = tokio::task::spawn_local(run);
            tokio::time::sleep(Duration::from_millis(250)).await;
            gate.stop();
            let at_stop = ticks.get();
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(ticks.get(), at_stop, "no progress while stopped");
            gate.resume();
            task.await.unwrap();
            assert_eq!(ticks.get(), 10);
        });
    }
}
