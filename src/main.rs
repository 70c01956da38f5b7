//! The `ssm` command line: see [`ssm::cli`].

fn main() {
    std::process::exit(ssm::cli::main());
}
