//! A small tmpfs mounted on a directory (a receiver's `incoming/`) to make its disk full, and
//! unmounted (lazily) when dropped. Mounting needs root and mount rights: without them the
//! test fails with a message saying so (it is never skipped).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs.
pub struct Tmpfs {
    /// Where it is mounted.
    pub mount: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (a `mount -o size=` value) on `dir`.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount -t tmpfs on {} failed ({st}): this test needs root and mount rights",
            dir.display()
        );
        Tmpfs {
            mount: dir.to_path_buf(),
        }
    }

    /// Fills it up completely with one file, `filler` (removed again by [`Tmpfs::free`]).
    pub fn fill(&self) {
        let mut f = fs::File::create(self.mount.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    /// Removes what [`Tmpfs::fill`] wrote: the space is back.
    pub fn free(&self) {
        fs::remove_file(self.mount.join("filler")).unwrap();
    }

    /// Fills it up with 4 KiB files, then frees `pages` of them.
    pub fn fill_leaving(&self, pages: usize) {
        let dir = self.mount.join("filler");
        fs::create_dir_all(&dir).unwrap();
        let page = vec![0u8; 4096];
        let mut n = 0;
        while fs::write(dir.join(n.to_string()), &page).is_ok() {
            n += 1;
        }
        // The write that failed may have left an empty file.
        let _ = fs::remove_file(dir.join(n.to_string()));
        assert!(n > pages, "the tmpfs holds only {n} pages");
        for i in 0..pages {
            fs::remove_file(dir.join(i.to_string())).unwrap();
        }
    }

    /// Gives it more room.
    pub fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.mount)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount of {} failed", self.mount.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
