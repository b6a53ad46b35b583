//! Reading a file a user names (a template, a members list, a config, a scenario): a regular
//! file of bounded size. A pipe would block the reader for ever and a device such as
//! /dev/zero fill its memory; both are bad input, said so at once.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The text of the regular file at `path`, at most `limit` bytes; otherwise an error that
/// says why (the caller names the file).
pub fn read_bounded(path: &Path, limit: u64) -> Result<String, String> {
    // Opened without blocking and judged by what was opened, not by a look at the path
    // before: a named pipe swapped in between the two would block the open (and the
    // read) for ever. Non-blocking changes nothing for a regular file's reads.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit {
        return Err(format!("{} bytes, over the {limit}-byte limit", meta.len()));
    }
    let mut text = String::new();
    // The file may grow after the look: read no more than the limit allows.
    file.take(limit + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > limit {
        return Err(format!("over the {limit}-byte limit"));
    }
    Ok(text)
}
