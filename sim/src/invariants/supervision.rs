//! The supervisor's promises (s6), read from each host's supervision record in the trace.
//!
//! - `restart-spacing`: two starts of one service within one boot are at least the restart
//!   delay (1 s) apart: no restart storm.
//! - `one-instance`: a service is never started while a run of it is alive.
//! - `quiet-shutdown`: nothing starts once the node's shutdown began.
//! - `finish-once`: a finish script runs after a death, at most once per death, and before
//!   the next start.
//!
//! A host's crash or halt ends every run at once; its next boot starts a new record.

use std::collections::BTreeMap;
use std::time::Duration;

use rollcall::supervisor::core::RESTART_DELAY;

use super::{Verdict, secs};
use crate::observe::{Observations, Supervision};

/// What is known of one service within one boot.
#[derive(Default)]
struct ServiceRecord {
    last_start: Option<Duration>,
    alive: bool,
    /// Died, and no finish ran for that death yet.
    awaiting_finish: bool,
}

struct Checks {
    spacing: Verdict,
    one_instance: Verdict,
    quiet_shutdown: Verdict,
    finish_once: Verdict,
}

/// Checks the four rules; returns their verdicts in the order of the module's list.
pub fn check(obs: &Observations) -> [Verdict; 4] {
    let mut checks = Checks {
        spacing: Verdict::new(
            "restart-spacing",
            format!("two starts of one service are at least {} apart", secs(RESTART_DELAY)),
        ),
        one_instance: Verdict::new("one-instance", "a service is never started while it runs".into()),
        quiet_shutdown: Verdict::new("quiet-shutdown", "nothing starts once a node's shutdown began".into()),
        finish_once: Verdict::new(
            "finish-once",
            "a finish script runs after a death, at most once per death, before the next start".into(),
        ),
    };
    for (host, record) in &obs.supervision {
        checks.host(host, record);
    }
    let Checks { spacing, one_instance, quiet_shutdown, finish_once } = checks;
    [spacing, one_instance, quiet_shutdown, finish_once]
}

impl Checks {
    fn host(&mut self, host: &str, record: &[(Duration, Supervision)]) {
        let mut services: BTreeMap<&str, ServiceRecord> = BTreeMap::new();
        let mut shutdown_at = None;
        for (at, event) in record {
            match event {
                Supervision::Booted | Supervision::Down => {
                    services.clear();
                    shutdown_at = None;
                }
                Supervision::Shutdown => {
                    self.quiet_shutdown.checked += 1;
                    shutdown_at = Some(*at);
                }
                Supervision::Started(service) => {
                    let record = services.entry(service).or_default();
                    self.started(host, service, *at, record, shutdown_at);
                }
                Supervision::Exited(service) => {
                    let record = services.entry(service).or_default();
                    record.alive = false;
                    record.awaiting_finish = true;
                }
                Supervision::Finished(service) => {
                    self.finish_once.checked += 1;
                    let record = services.entry(service).or_default();
                    if !record.awaiting_finish {
                        let what = format!(
                            "{service} on {host}: a finish at {} without a death before it",
                            secs(*at)
                        );
                        self.finish_once.fail(*at, &[host], what);
                    }
                    record.awaiting_finish = false;
                }
            }
        }
    }

    fn started(
        &mut self,
        host: &str,
        service: &str,
        at: Duration,
        record: &mut ServiceRecord,
        shutdown_at: Option<Duration>,
    ) {
        self.one_instance.checked += 1;
        if record.alive {
            self.one_instance.fail(
                at,
                &[host],
                format!("{service} on {host} started at {} while it ran", secs(at)),
            );
        }
        if let Some(last) = record.last_start {
            self.spacing.checked += 1;
            if at.saturating_sub(last) < RESTART_DELAY {
                let what = format!("{service} on {host} started at {} and again at {}", secs(last), secs(at));
                self.spacing.fail(at, &[host], what);
            }
        }
        if let Some(since) = shutdown_at {
            let what = format!(
                "{service} on {host} started at {}, in a shutdown begun at {}",
                secs(at),
                secs(since)
            );
            self.quiet_shutdown.fail(at, &[host], what);
        }
        // A finish that comes after this start is not the previous death's.
        record.awaiting_finish = false;
        record.alive = true;
        record.last_start = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rollcall::host::Event;

    use super::*;
    use crate::trace::{Entry, Record, Trace, WorldEvent};

    fn observations(events: &[(u64, Event)]) -> Observations {
        let roles = BTreeMap::from([("s1".to_string(), "backend".to_string())]);
        let plan = WorldEvent::bare_plan(60_000, roles);
        let mut records = vec![Record { t_us: 0, host: "world".into(), event: Entry::World(plan) }];
        records.push(Record {
            t_us: 0,
            host: "s1".into(),
            event: Entry::Host(Event::HostBooted { boot: 1 }),
        });
        for (ms, event) in events {
            records.push(Record { t_us: ms * 1000, host: "s1".into(), event: Entry::Host(event.clone()) });
        }
        Observations::new(&Trace { records })
    }

    fn started(service: &str) -> Event {
        Event::ServiceStarted { service: service.into() }
    }

    fn exited(service: &str) -> Event {
        Event::ServiceExited { service: service.into(), status: "exit 1".into() }
    }

    fn finished(service: &str) -> Event {
        Event::ServiceFinished { service: service.into(), code: Some(0) }
    }

    fn verdicts(events: &[(u64, Event)]) -> [Verdict; 4] {
        check(&observations(events))
    }

    #[test]
    fn a_well_behaved_supervisor_holds_all_four() {
        let [spacing, one, _, finish] = verdicts(&[
            (0, started("app")),
            (200, exited("app")),
            (300, finished("app")),
            (1300, started("app")),
        ]);
        assert!(spacing.holds() && one.holds() && finish.holds(), "{spacing:?} {one:?} {finish:?}");
    }

    #[test]
    fn each_rule_catches_its_failure() {
        let [spacing, one, quiet, finish] = verdicts(&[
            (0, started("app")),
            (100, exited("app")),
            (200, started("app")),
            (300, started("app")),
            (400, finished("app")),
            (500, Event::NodeShutdown { code: 0 }),
            (2000, started("web")),
        ]);
        assert_eq!(spacing.failed, 2, "{spacing:?}");
        assert_eq!(one.failed, 1, "{one:?}");
        assert_eq!(finish.failed, 1, "a finish while the service runs: {finish:?}");
        assert_eq!(quiet.failed, 1, "{quiet:?}");
    }

    #[test]
    fn a_crash_and_a_new_boot_start_a_new_record() {
        let [spacing, one, ..] = verdicts(&[
            (0, started("app")),
            (100, Event::HostHalted { code: 0 }),
            (200, Event::HostBooted { boot: 2 }),
            (300, started("app")),
        ]);
        assert!(one.holds(), "{one:?}");
        assert!(spacing.is_unchecked(), "one start per boot: {spacing:?}");
    }
}
