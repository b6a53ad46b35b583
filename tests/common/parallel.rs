//! Runs a suite's independent simulations on every core: cargo runs test binaries one after
//! another, and a binary whose time is one long loop of runs would keep one of CI's two
//! cores idle. Each run is deterministic on its own thread, as `explore` runs seeds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `check(item)` for every item, on as many threads as the machine has cores. Every item
/// runs even when some fail; then the failures are reported together, in item order.
pub fn check_all<T: Sync>(items: &[T], check: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(item)));
                    if let Err(panic) = outcome {
                        failures.lock().unwrap().push((index, message(panic.as_ref())));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    let report: Vec<String> = failures.into_iter().map(|(_, message)| message).collect();
    assert!(report.is_empty(), "{} of {} failed:\n{}", report.len(), items.len(), report.join("\n---\n"));
}

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
        (Some(text), _) => text.clone(),
        (None, Some(text)) => (*text).to_string(),
        (None, None) => "a panic without a message".to_string(),
    }
}
