//! The stats page, as HAProxy's `stats uri` serves it: one row per server with its status,
//! last check, current and total sessions; `;csv` after the uri gives the same rows in
//! HAProxy's CSV column names. Rendering is a pure function of the rows.

use std::fmt::Write;

use super::config::StatsPage;

/// One server's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStats {
    /// Backend name.
    pub backend: String,
    /// Server name.
    pub server: String,
    /// `UP`, `UP 1/3`, `DOWN`, `DOWN 1/2`, `MAINT` or `no check`.
    pub status: String,
    /// `weight`.
    pub weight: u32,
    /// A `backup` server.
    pub backup: bool,
    /// Requests in flight.
    pub current: u32,
    /// Requests sent to it since start.
    pub total: u64,
    /// Failed checks.
    pub check_failures: u32,
    /// UP to DOWN transitions.
    pub downs: u32,
    /// HAProxy's check code of the last check: `L4OK`, `L4CON`, `L4TOUT`, `L7OK`, `L7STS`,
    /// `L7RSP`, or `INI` before the first, empty without checks.
    pub last_check: String,
}

/// Whether a request with `authorization` (its `Authorization` header) may see `page`: a
/// page without `stats auth` is open; otherwise the header must be HTTP basic auth with one
/// of its accounts.
pub fn authorized(page: &StatsPage, authorization: Option<&[u8]>) -> bool {
    use base64::Engine;
    if page.users.is_empty() {
        return true;
    }
    let Some(header) = authorization.and_then(|h| std::str::from_utf8(h).ok()) else { return false };
    let Some((scheme, token)) = header.trim().split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else { return false };
    let Some((user, password)) = std::str::from_utf8(&decoded).ok().and_then(|a| a.split_once(':')) else {
        return false;
    };
    page.users.iter().any(|(u, p)| u == user && p == password)
}

/// The `WWW-Authenticate` value that asks for the page's accounts.
pub fn challenge(page: &StatsPage) -> String {
    format!("Basic realm=\"{}\"", page.realm.replace(['"', '\\'], ""))
}

/// The CSV columns written, a prefix of HAProxy's `show stat` with the ones not kept left out.
pub const CSV_HEADER: &str = "# pxname,svname,scur,stot,status,weight,act,bck,chkfail,chkdown,check_status";

/// The rows as HAProxy-style CSV.
pub fn csv(rows: &[ServerStats]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for row in rows {
        let (active, backup) = if row.backup { (0, 1) } else { (1, 0) };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{active},{backup},{},{},{}",
            row.backend,
            row.server,
            row.current,
            row.total,
            row.status,
            row.weight,
            row.check_failures,
            row.downs,
            row.last_check
        );
    }
    out
}

/// The rows as a plain-text table; `version` is left out when `None` (`stats hide-version`).
pub fn text(rows: &[ServerStats], version: Option<&str>) -> String {
    let mut out = String::from("rollcall balancer statistics");
    if let Some(version) = version {
        let _ = write!(out, " (version {version})");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<12} {:<12} {:<10} {:>6} {:>4} {:>8} {:>10} {:>8} {:>8}",
        "backend", "server", "status", "weight", "cur", "total", "check", "chkfail", "chkdown"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:<10} {:>6} {:>4} {:>8} {:>10} {:>8} {:>8}",
            row.backend,
            row.server,
            row.status,
            row.weight,
            row.current,
            row.total,
            row.last_check,
            row.check_failures,
            row.downs
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_auth_wants_basic_auth_with_one_of_the_accounts() {
        let open = StatsPage::default();
        assert!(authorized(&open, None));
        let page = StatsPage {
            users: vec![("admin".into(), "s3cret".into()), ("ops".into(), "a:b".into())],
            ..StatsPage::default()
        };
        // base64("admin:s3cret"), base64("ops:a:b"), base64("admin:wrong").
        assert!(authorized(&page, Some(b"Basic YWRtaW46czNjcmV0")));
        assert!(authorized(&page, Some(b"basic b3BzOmE6Yg==")));
        assert!(!authorized(&page, Some(b"Basic YWRtaW46d3Jvbmc=")));
        for bad in [
            &b""[..],
            b"Basic",
            b"Bearer YWRtaW46czNjcmV0",
            b"Basic !!!",
            b"Basic \xff\xfe",
            b"Basic YWRtaW4=",
        ] {
            assert!(!authorized(&page, Some(bad)), "{bad:?}");
        }
        assert!(!authorized(&page, None));
        assert_eq!(challenge(&page), "Basic realm=\"HAProxy Statistics\"");
    }

    #[test]
    fn csv_has_haproxys_column_names_and_one_row_per_server() {
        let row = ServerStats {
            backend: "nodes".into(),
            server: "s1".into(),
            status: "UP 1/3".into(),
            weight: 1,
            backup: false,
            current: 2,
            total: 40,
            check_failures: 1,
            downs: 0,
            last_check: "L7OK".into(),
        };
        let text = csv(std::slice::from_ref(&row));
        assert_eq!(text, format!("{CSV_HEADER}\nnodes,s1,2,40,UP 1/3,1,1,0,1,0,L7OK\n"));
        assert!(self::text(&[row], None).lines().nth(2).unwrap().starts_with("nodes        s1"));
    }

    /// The CSV for a fixed state: the lab's backend in the middle of a partial cut (s1 taken
    /// out by its checks, s2 serving), reviewed by hand.
    #[test]
    fn the_csv_of_a_partial_cut() {
        let row = |server: &str, status: &str, current, total, failures, downs, check: &str| ServerStats {
            backend: "nodes".into(),
            server: server.into(),
            status: status.into(),
            weight: 1,
            backup: false,
            current,
            total,
            check_failures: failures,
            downs,
            last_check: check.into(),
        };
        let rows = [row("s1", "DOWN", 0, 48, 4, 1, "L4CON"), row("s2", "UP", 1, 121, 0, 0, "L7OK")];
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("stats_csv_partial_cut", csv(&rows));
        });
    }
}
