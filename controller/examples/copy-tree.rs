//! `copy-tree FROM TO`: copy a tree as `reuse-deps` does ([`shipshape::release::copy_tree`])
//! and print what was done, for `hack/measure-deps.sh`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        eprintln!("usage: copy-tree FROM TO");
        std::process::exit(2);
    };
    let t0 = std::time::Instant::now();
    match shipshape::release::copy_tree(from.as_ref(), to.as_ref()) {
        Ok(s) => println!(
            "{:.3} s, {} files ({} reflinked), {} bytes, {} symlinks",
            t0.elapsed().as_secs_f64(),
            s.files,
            s.cloned,
            s.bytes,
            s.symlinks
        ),
        Err(e) => {
            eprintln!("copy-tree: {e}");
            std::process::exit(1);
        }
    }
}
