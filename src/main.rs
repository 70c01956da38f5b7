//! The `ssm` command line: see [`ssm::cli`]. Called as `ssmsend` or `ssmreceive` (the packaged
//! symlinks), it is the Python SSM's command of that name instead: see [`ssm::cli::dropin`].

use ssm::cli::dropin::{self, DropIn};

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let status = match DropIn::from_argv0(&argv0) {
        Some(role) => dropin::main(role, std::env::args_os()),
        None => ssm::cli::main(),
    };
    std::process::exit(status);
}
