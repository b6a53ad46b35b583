//! Reading a file a user names (a template, a members list, a config, a scenario): a regular
//! file of bounded size. A pipe would block the reader for ever and a device such as
//! /dev/zero fill its memory; both are bad input, said so at once. And replacing one
//! (a rendered config, a trace, a report) so that a reader never sees half of it.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Most symbolic links followed to find the file a write replaces (Linux's own limit).
const SYMLINK_HOPS_MAX: usize = 40;

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

/// Replaces the file at `path` with `bytes` atomically: a temporary file beside it, fsync,
/// rename, fsync of the directory, so a reader (or a crash) sees the old bytes or the new.
/// A symbolic link is followed and the file it names replaced, the link kept. Anything but
/// a regular file at the end (a device, a pipe, a directory) is refused rather than replaced
/// by a regular file: `--trace /dev/stdout` run as root would otherwise replace the link.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, bytes, NEW_FILE_MODE)
}

/// Mode of a file [`write_atomic`] creates (the umask applies): readable by all, as
/// consul-template's and HAProxy's files are.
pub const NEW_FILE_MODE: u32 = 0o644;
/// Mode of a secret's new file (a keyring), as Serf writes its keyring file.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// [`write_atomic`], a new file created with `mode`; a replaced file keeps its own mode.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let target = replaceable_target(path)?;
    let kept_mode = match std::fs::metadata(&target) {
        Ok(meta) => Some(meta.permissions()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let dir = target.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = target.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", target.display()))
    })?;
    let mut temporary_name = file_name.to_os_string();
    temporary_name.push(".rollcall-tmp");
    let temporary = dir.join(temporary_name);
    let named = |error: io::Error| io::Error::new(error.kind(), format!("{}: {error}", temporary.display()));
    // A leftover of an interrupted write, or a link planted there, is removed, not followed.
    match std::fs::remove_file(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(named(error)),
        _ => {}
    }
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .map_err(named)?;
        if let Some(permissions) = kept_mode {
            file.set_permissions(permissions).map_err(named)?;
        }
        file.write_all(bytes).map_err(named)?;
        file.sync_all().map_err(named)?;
        drop(file);
        std::fs::rename(&temporary, &target)
    })();
    if let Err(error) = written {
        // Nothing half-written is left beside the target.
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    // The rename is only durable once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

/// The file a write to `path` replaces: `path` through its symbolic links, refused when
/// something other than a regular file is there (a directory, device or named pipe, which a
/// rename would replace and a read could block on). Callers check it before their work too,
/// so that a bad output is refused before a run.
pub fn replaceable_target(path: &Path) -> io::Result<PathBuf> {
    let target = resolve_links(path)?;
    match std::fs::metadata(&target) {
        Ok(meta) if !meta.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file (a directory, device or pipe): not replaced", target.display()),
        )),
        _ => Ok(target),
    }
}

/// Whether `a` and `b` name one existing file, however each is spelled.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// `path` with every symbolic link at its end followed (a link to a link...); a path that is
/// not a link, or does not exist yet, is itself.
fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..SYMLINK_HOPS_MAX {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                let base = current.parent().unwrap_or(Path::new("."));
                current = base.join(link);
            }
            Ok(_) => return Ok(current),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: more than {SYMLINK_HOPS_MAX} symbolic links", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rollcall-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_write_through_a_link_replaces_the_file_it_names_and_keeps_the_link() {
        let dir = scratch("link");
        std::fs::write(dir.join("real.cfg"), "old").unwrap();
        std::os::unix::fs::symlink("real.cfg", dir.join("link.cfg")).unwrap();
        write_atomic(&dir.join("link.cfg"), b"new").unwrap();
        assert!(std::fs::symlink_metadata(dir.join("link.cfg")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(dir.join("real.cfg")).unwrap(), "new");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pipe_a_directory_or_a_device_is_refused_and_kept() {
        let dir = scratch("special");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        std::os::unix::fs::symlink("/dev/null", dir.join("null")).unwrap();
        for path in [fifo.clone(), dir.clone(), dir.join("null")] {
            let error = write_atomic(&path, b"x").expect_err("refused");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{}", path.display());
        }
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::symlink_metadata(dir.join("null")).unwrap().file_type().is_symlink());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_secret_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, "old").unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&cfg, b"new").unwrap();
        assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o640);
        let keyring = dir.join("keyring.json");
        write_atomic_with_mode(&keyring, b"[]", SECRET_FILE_MODE).unwrap();
        assert_eq!(std::fs::metadata(&keyring).unwrap().permissions().mode() & 0o077, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = scratch("planted");
        std::fs::write(dir.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(dir.join("victim"), dir.join("out.cfg.rollcall-tmp")).unwrap();
        write_atomic(&dir.join("out.cfg"), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("victim")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dir.join("out.cfg")).unwrap(), "new");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
