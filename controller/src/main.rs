//! The `shipshape` binary: parse the command line and hand over to [`shipshape::cli`].

fn main() -> anyhow::Result<()> {
    let code = shipshape::cli::main()?;
    std::process::exit(code);
}
