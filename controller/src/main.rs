//! The `shipshape` binary: parse the command line and hand over to [`shipshape::cli`].
//!
//! An ordinary error (pm2 not found, a state directory that cannot be read …) is printed as
//! `error: <message>` with at most two `caused by:` lines, and the exit code is 1, whatever
//! `RUST_BACKTRACE` says: a backtrace is for bugs, and a panic still prints one.

fn main() {
    match shipshape::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprint!("{}", shipshape::cli::error_text(&e));
            std::process::exit(1);
        }
    }
}
