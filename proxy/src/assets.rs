//! `hoist-proxy merge-assets A B`: each directory gets the files only the other has, for hoist's
//! asset bridging (`asset_path`). hoist runs it in a one-off container of the proxy image, the
//! only image it knows to be on every proxy host, with the old version's asset volume and the
//! new one's mounted: the new version can then serve the assets pages of the old one still ask
//! for, and the old one (serving until the switch) the new one's. A file both have is left
//! alone in both (never overwritten); mode and owner are kept; symlinks are copied as links.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

/// What a merge did: files copied into each side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub into_first: usize,
    pub into_second: usize,
}

/// Copy into `first` what only `second` has, and into `second` what only `first` has (as both
/// were before the merge).
pub fn merge(first: &Path, second: &Path) -> io::Result<Merged> {
    // Copying one way first would make the other way copy the same files back: count only
    // what each side had at the start.
    let missing_in_second = missing(first, second)?;
    let missing_in_first = missing(second, first)?;
    for relative in &missing_in_second {
        copy_entry(&first.join(relative), &second.join(relative))?;
    }
    for relative in &missing_in_first {
        copy_entry(&second.join(relative), &first.join(relative))?;
    }
    Ok(Merged {
        into_first: missing_in_first.len(),
        into_second: missing_in_second.len(),
    })
}

/// The entries (relative paths, parents before children) under `from` that `to` lacks; a
/// directory `to` lacks is listed once, with what it holds copied along with it.
fn missing(from: &Path, to: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![std::path::PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(from.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let there = to.join(&path);
            match fs::symlink_metadata(&there) {
                Ok(meta) if meta.is_dir() && entry.file_type()?.is_dir() => pending.push(path),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => found.push(path),
                Err(error) => return Err(error),
            }
        }
    }
    Ok(found)
}

/// Copy one file, link or whole directory, keeping modes and owners.
fn copy_entry(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)?;
    } else if meta.is_dir() {
        fs::create_dir(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_entry(&entry.path(), &to.join(entry.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode()))?;
    } else if meta.is_file() {
        fs::copy(from, to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode()))?;
    } else {
        // Sockets, fifos, devices: nothing an app serves.
        return Ok(());
    }
    // Keeping the owner needs root; without it, the files are the caller's.
    match std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_gets_what_only_the_other_had_and_nothing_is_overwritten() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(old.path().join("app-1.css"), "old css").unwrap();
        fs::write(old.path().join("shared.txt"), "old shared").unwrap();
        fs::create_dir_all(old.path().join("img/icons")).unwrap();
        fs::write(old.path().join("img/icons/a.svg"), "a").unwrap();
        fs::write(new.path().join("app-2.css"), "new css").unwrap();
        fs::write(new.path().join("shared.txt"), "new shared").unwrap();
        fs::create_dir(new.path().join("img")).unwrap();
        fs::write(new.path().join("img/b.png"), "b").unwrap();
        fs::set_permissions(
            old.path().join("app-1.css"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        symlink("app-2.css", new.path().join("latest.css")).unwrap();

        let merged = merge(old.path(), new.path()).unwrap();
        assert_eq!(
            merged,
            Merged {
                into_first: 3,
                into_second: 2
            }
        );
        let read = |dir: &Path, name: &str| fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read(new.path(), "app-1.css"), "old css");
        assert_eq!(read(new.path(), "img/icons/a.svg"), "a");
        assert_eq!(read(old.path(), "app-2.css"), "new css");
        assert_eq!(read(old.path(), "img/b.png"), "b");
        assert_eq!(read(old.path(), "shared.txt"), "old shared");
        assert_eq!(read(new.path(), "shared.txt"), "new shared");
        assert_eq!(
            fs::read_link(old.path().join("latest.css")).unwrap(),
            Path::new("app-2.css")
        );
        let mode = fs::metadata(new.path().join("app-1.css")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // Done again, nothing moves.
        assert_eq!(merge(old.path(), new.path()).unwrap(), Merged::default());
    }
}
