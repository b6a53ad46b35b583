//! Choosing a server, as HAProxy's `balance` algorithms do, sans-io: the backend's servers, which
//! of them are UP, the requests in flight and the client's address in; an index out.
//!
//! Servers that are `disabled`, DOWN or of weight 0 take no new requests; `backup` servers are
//! used only while no other server can (the first usable backup, as without `allbackups`).

use std::cell::RefCell;
use std::net::IpAddr;

use super::config::{Balance, Server};

/// Per-load state of the algorithms: smooth weighted round-robin credit, and the rotation
/// that breaks `leastconn` ties.
#[derive(Debug, Default)]
pub struct Selector {
    credit: RefCell<Vec<i64>>,
}

impl Selector {
    /// Chooses among `servers`; `usable` says which are UP, `in_flight` how many requests each
    /// has (by index), `client` is hashed by `source`. `except` is skipped (a redispatch).
    pub fn choose(
        &self,
        balance: Balance,
        servers: &[Server],
        usable: impl Fn(&Server) -> bool,
        in_flight: impl Fn(usize) -> u32,
        client: IpAddr,
        except: Option<usize>,
    ) -> Option<usize> {
        let eligible = |i: usize, backup: bool| {
            let s = &servers[i];
            Some(i) != except && !s.disabled && s.weight > 0 && s.backup == backup && usable(s)
        };
        // The candidates are the usable active servers, else the first usable backup; they are
        // walked as an iterator because this runs once per request (no allocation).
        let first_backup = if (0..servers.len()).any(|i| eligible(i, false)) {
            None
        } else {
            Some((0..servers.len()).find(|i| eligible(*i, true))?)
        };
        let candidates = (0..servers.len()).filter(move |&i| match first_backup {
            Some(backup) => i == backup,
            None => eligible(i, false),
        });
        match balance {
            Balance::RoundRobin => self.weighted_round_robin(servers, candidates),
            Balance::First => candidates.clone().next(),
            Balance::Source => by_source(servers, candidates, client),
            Balance::LeastConn => {
                let fewest = candidates.clone().map(&in_flight).min()?;
                let tied = candidates.filter(|i| in_flight(*i) == fewest);
                self.weighted_round_robin(servers, tied)
            }
        }
    }

    /// Smooth weighted round robin (every candidate gains its weight, the richest is chosen
    /// and pays the total): with equal weights, declaration order, s1 s2 s3 s1 ...
    fn weighted_round_robin(
        &self,
        servers: &[Server],
        candidates: impl Iterator<Item = usize>,
    ) -> Option<usize> {
        let mut credit = self.credit.borrow_mut();
        if credit.len() != servers.len() {
            *credit = vec![0; servers.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in candidates {
            let weight = i64::from(servers[i].weight);
            total += weight;
            credit[i] += weight;
            if best.is_none_or(|b| credit[i] > credit[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        credit[best] -= total;
        Some(best)
    }
}

/// HAProxy's map-based `source` hash: the client's address picks a slot among the candidates,
/// each taking `weight` slots.
fn by_source(
    servers: &[Server],
    candidates: impl Iterator<Item = usize> + Clone,
    client: IpAddr,
) -> Option<usize> {
    let text = client.to_string();
    let hash = crate::host::stable_hash(text.as_bytes());
    let total: u64 = candidates.clone().map(|i| u64::from(servers[i].weight)).sum();
    let mut slot = hash % total.max(1);
    for i in candidates.clone() {
        let weight = u64::from(servers[i].weight);
        if slot < weight {
            return Some(i);
        }
        slot -= weight;
    }
    candidates.clone().next()
}

/// The value of cookie `name` in a request's `Cookie` header(s).
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers.flat_map(|h| h.split(';')).map(str::trim).find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// A `Cookie` header without cookie `name` (`None`: nothing left).
pub fn without_cookie(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(key, _)| key.trim() != name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(weights: &[u32]) -> Vec<Server> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Server {
                name: format!("s{}", i + 1),
                addr: ([10, 0, 0, i as u8 + 1], 80).into(),
                check: None,
                weight: *w,
                backup: false,
                disabled: false,
                cookie: None,
            })
            .collect()
    }

    fn picks(selector: &Selector, balance: Balance, list: &[Server], n: usize) -> Vec<usize> {
        let client: IpAddr = [192, 168, 0, 9].into();
        (0..n).filter_map(|_| selector.choose(balance, list, |_| true, |_| 0, client, None)).collect()
    }

    #[test]
    fn round_robin_follows_declaration_order_and_weights() {
        let selector = Selector::default();
        assert_eq!(picks(&selector, Balance::RoundRobin, &servers(&[1, 1, 1]), 6), [0, 1, 2, 0, 1, 2]);
        let weighted = picks(&Selector::default(), Balance::RoundRobin, &servers(&[3, 1]), 8);
        assert_eq!(weighted.iter().filter(|i| **i == 0).count(), 6, "{weighted:?}");
        assert_eq!(picks(&Selector::default(), Balance::RoundRobin, &servers(&[1, 0]), 3), [0, 0, 0]);
    }

    #[test]
    fn leastconn_takes_the_fewest_in_flight_and_rotates_ties() {
        let list = servers(&[1, 1, 1]);
        let selector = Selector::default();
        let client: IpAddr = [10, 0, 0, 9].into();
        let busy = |i: usize| if i == 0 { 5 } else { 0 };
        let chosen: Vec<usize> = (0..4)
            .filter_map(|_| selector.choose(Balance::LeastConn, &list, |_| true, busy, client, None))
            .collect();
        assert_eq!(chosen, [1, 2, 1, 2]);
    }

    #[test]
    fn source_is_stable_per_client_first_fills_in_order_and_backups_wait() {
        let list = servers(&[1, 1, 1]);
        let selector = Selector::default();
        let one = picks(&selector, Balance::Source, &list, 5);
        assert!(one.windows(2).all(|w| w[0] == w[1]), "{one:?}");
        let spread: std::collections::BTreeSet<usize> = (0..50u8)
            .filter_map(|c| {
                selector.choose(Balance::Source, &list, |_| true, |_| 0, [10, 1, 0, c].into(), None)
            })
            .collect();
        assert_eq!(spread.len(), 3, "50 clients over 3 servers");
        assert_eq!(picks(&selector, Balance::First, &list, 3), [0, 0, 0]);
        let mut with_backup = servers(&[1, 1]);
        with_backup[1].backup = true;
        assert_eq!(picks(&Selector::default(), Balance::RoundRobin, &with_backup, 2), [0, 0]);
        let down = |s: &Server| s.name != "s1";
        let client: IpAddr = [10, 0, 0, 9].into();
        assert_eq!(
            Selector::default().choose(Balance::RoundRobin, &with_backup, down, |_| 0, client, None),
            Some(1)
        );
        with_backup[1].disabled = true;
        assert_eq!(
            Selector::default().choose(Balance::RoundRobin, &with_backup, down, |_| 0, client, None),
            None
        );
    }

    #[test]
    fn cookies_are_found_and_removed() {
        let headers = ["a=1; SERVERID=s2", "b=3"];
        assert_eq!(cookie_value(headers.into_iter(), "SERVERID"), Some("s2"));
        assert_eq!(cookie_value(headers.into_iter(), "NONE"), None);
        assert_eq!(without_cookie("a=1; SERVERID=s2; c=4", "SERVERID").as_deref(), Some("a=1; c=4"));
        assert_eq!(without_cookie("SERVERID=s2", "SERVERID"), None);
    }
}
