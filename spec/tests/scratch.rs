#[test]
fn scratch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/prompthub/prompthub.yaml")).unwrap();
    let app = shipshape_spec::load_str(&text, "p.yaml").unwrap();
    println!("{:?}", app.spec.processes[0].env);
    for (from, to) in [("timeout: 2s", "timeout: 5 sec"), ("maxLatency: 100ms", "maxLatenc: 100ms"), ("instances: 2", "instances: two"), ("keep: 5", "keep: [5"), ("PORT: 3000", "PORT: [1]"), ("exec_mode: cluster", "exec_mode: clusterx"), ("successThreshold: 3", "successThreshold: 0"), ("commit: 3f2a", "commit: 3f2"), ("apiVersion: shipshape/v1alpha1", "apiVersion: v2")] {
        let t = text.replacen(from, to, 1);
        println!("{}", shipshape_spec::load_str(&t, "p.yaml").unwrap_err());
    }
    println!("{}", shipshape_spec::load_str("", "p.yaml").unwrap_err());
    println!("{}", shipshape_spec::load_str("a: b\n---\nc: d\n", "p.yaml").unwrap_err());
}
