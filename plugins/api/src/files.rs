//! Reading the files an operator names (project files, `wharf.toml`,
//! `settings.toml`, TLS files, env files, compose files) without letting one
//! exhaust the daemon.
//!
//! `std::fs::read` follows a path to whatever it names: `/dev/zero`, a FIFO
//! or a multi-gigabyte log would be read until memory runs out. These
//! readers take regular files only, and at most [`MAX_FILE_BYTES`] of them.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The largest file any of wharf's settings may name: far above any real
/// project, config, certificate or compose file.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of the regular file at `path`, at most [`MAX_FILE_BYTES`].
///
/// # Errors
/// The file cannot be opened or read, is not a regular file (a device, a
/// FIFO, a folder), or is larger than the limit (`InvalidData`).
pub fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
        ));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
///
/// # Errors
/// As [`read_limited`], and text that is not UTF-8 (`InvalidData`).
pub fn read_limited_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_limited(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_huge_files_are_refused_small_files_read() {
        let refused = |path: &Path| read_limited(path).unwrap_err().to_string();
        assert_eq!(refused(Path::new("/dev/zero")), "not a regular file");
        assert_eq!(refused(Path::new("/")), "not a regular file");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        assert!(refused(&big).contains("larger than 4 MiB"));
        let small = dir.path().join("small");
        std::fs::write(&small, "a = 1\n").unwrap();
        assert_eq!(read_limited_to_string(&small).unwrap(), "a = 1\n");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert_eq!(refused(&link), "not a regular file");
    }
}
