//! The traffic steps (`spec.traffic`): start a release's slot on its own port, prove it
//! there before nginx sends it a request, switch nginx's upstream to it, and retire a slot
//! traffic left (drain, then stop). Decided by [`crate::plan`]'s traffic sections; nginx and
//! the kernel's sockets are [`crate::traffic`]'s.

use std::time::Duration;

use shipshape_spec::status::StepKind;
use tracing::{info, warn};

use super::{Run, StepError, Tools, append_log_line, pm2_error, verify, write_file};
use crate::reconcile::decide::ErrorClass;
use crate::traffic::{self, Warm, net, nginx, settings};

/// How often a drain looks at the slot's connections.
const DRAIN_POLL: Duration = Duration::from_millis(100);

fn no_traffic(kind: StepKind) -> StepError {
    StepError::new(
        kind,
        ErrorClass::Stalled,
        "the document has no spec.traffic with a serving process",
    )
}

/// `slot-start`: the port must be free (a clear error naming it and its holder if not);
/// then pm2 starts the serving process under `NAME@PORT` from the release's own directory.
pub(super) async fn start(
    tools: &Tools<'_>,
    run: &Run<'_>,
    process: &str,
    port: u16,
) -> Result<(), StepError> {
    let kind = StepKind::SlotStart;
    let app = run.app;
    let (_, p) = traffic::serving(app).ok_or_else(|| no_traffic(kind))?;
    if let Some(holder) = net::listener(port) {
        let who = match (holder.pid, holder.command) {
            (Some(pid), Some(cmd)) => format!("pid {pid} ({cmd})"),
            (Some(pid), None) => format!("pid {pid}"),
            _ => "another process".to_string(),
        };
        return Err(StepError::new(
            kind,
            ErrorClass::Transient,
            format!(
                "slot port {port} (spec.traffic.ports) is already taken by {who}: free it or choose another port; nothing live changed"
            ),
        ));
    }
    // Whatever was warm on this port is gone (the plan retired it, or a hand deleted it):
    // the upstream file must not call what starts here warm, or an interrupted proof could
    // be taken for a proven slot.
    let (t, _) = traffic::serving(app).ok_or_else(|| no_traffic(kind))?;
    forget_warm(t, port, &run.log);
    let name = traffic::slot_name(process, port);
    let entry = traffic::slot_entry(app, p, &run.secrets.env, port);
    let path = tools.app_dir.join("slot-ecosystem.json");
    write_file(&path, &serde_json::json!({ "apps": [entry] }))?;
    tools
        .ports
        .pm2
        .start_or_reload(&path, &name)
        .await
        .map_err(|e| pm2_error(kind, e))
}

/// `slot-prove`: the checks on the slot's own port ([`traffic::slot_view`]) until
/// `successThreshold` rounds pass, failing fast after `failureThreshold` failing ones. A
/// slot that fails is deleted: no user ever reaches it.
pub(super) async fn prove(
    tools: &Tools<'_>,
    run: &mut Run<'_>,
    port: u16,
) -> Result<(), StepError> {
    let kind = StepKind::SlotProve;
    let app = run.app;
    let (_, p) = traffic::serving(app).ok_or_else(|| no_traffic(kind))?;
    let view = traffic::slot_view(app, port);
    let verifying = verify::Verifying {
        health: tools.health(),
        clock: &*tools.ports.clock,
        metrics: tools.metrics,
        fail_fast: true,
        output: run.output.as_ref(),
    };
    let (mut rounds, mut failed) = (Default::default(), Vec::new());
    let result = verifying
        .run(&view, &mut run.cancel, &mut rounds, &mut failed)
        .await;
    run.rounds = rounds;
    run.failed_checks = failed;
    let Err(mut e) = result else { return Ok(()) };
    e.step = kind;
    if e.class == ErrorClass::Stalled {
        // Proven bad: delete it (a slot cut short by a newer document is retired by the next
        // plan, which sees it run another config).
        let name = traffic::slot_name(&p.name, port);
        let deleted = tools.ports.pm2.delete(&name).await;
        let what = match deleted {
            Ok(()) => format!("slot {port} deleted; nginx never sent it a request"),
            Err(d) => format!("deleting slot {port} failed too ({d})"),
        };
        append_log_line(&run.log, &format!("!! slot-prove: {}; {what}", e.message));
        e.message = format!("slot {port}: {}; {what}", e.message);
    }
    Err(e)
}

/// `traffic-switch`: nginx's upstream file names the slot (and the warm one, with its time),
/// checked with `nginx -t`, applied with a graceful reload, confirmed by a request through
/// nginx that the slot answers. On any failure the old file is back and nothing live changed.
pub(super) async fn switch(
    tools: &Tools<'_>,
    run: &Run<'_>,
    port: u16,
    warm: Option<u16>,
) -> Result<(), StepError> {
    let kind = StepKind::TrafficSwitch;
    let app = run.app;
    let (t, _) = traffic::serving(app).ok_or_else(|| no_traffic(kind))?;
    let clock = &*tools.ports.clock;
    let warm = warm.map(|w| Warm {
        port: w,
        until: clock.now()
            + chrono::TimeDelta::from_std(t.warm_for.std()).unwrap_or(chrono::TimeDelta::MAX),
    });
    let text = traffic::upstream_text(t, &app.metadata.name, port, warm);
    let done = nginx::switch(t, &text, port, &*tools.ports.commands)
        .await
        .map_err(|e| StepError::new(kind, ErrorClass::Transient, e.to_string()))?;
    let line = format!(
        "== traffic on slot {port}, confirmed {} ms after the reload{}",
        done.confirmed_after.as_millis(),
        warm.map(|w| format!("; slot {} warm until {}", w.port, w.until))
            .unwrap_or_default()
    );
    info!(app = %app.metadata.name, port, confirmed_ms = done.confirmed_after.as_millis() as u64, "traffic switched");
    append_log_line(&run.log, &line);
    // What nginx's configuration says of the settings this relies on (notes, not failures).
    match settings::notes(t, &app.metadata.name, &*tools.ports.commands).await {
        Ok(notes) => {
            for n in notes {
                warn!(app = %app.metadata.name, "{n}");
                append_log_line(&run.log, &format!("-- {n}"));
            }
        }
        Err(e) => append_log_line(&run.log, &format!("-- nginx -T could not be read: {e}")),
    }
    Ok(())
}

/// `slot-retire`: wait until no connection is left to the slot's port (what nginx still
/// had in flight to it), at most `drainTimeout`, then delete its processes.
pub(super) async fn retire(
    tools: &Tools<'_>,
    run: &Run<'_>,
    process: &str,
    port: u16,
) -> Result<(), StepError> {
    let kind = StepKind::SlotRetire;
    let app = run.app;
    let (t, _) = traffic::serving(app).ok_or_else(|| no_traffic(kind))?;
    let clock = &*tools.ports.clock;
    let t0 = clock.elapsed();
    let mut open = net::established(port);
    while open > 0 && clock.elapsed().saturating_sub(t0) < t.drain_timeout.std() {
        clock.sleep(DRAIN_POLL).await;
        open = net::established(port);
    }
    let took = clock.elapsed().saturating_sub(t0).as_millis();
    let line = if open == 0 {
        format!("== slot {port} drained in {took} ms")
    } else {
        format!(
            "== slot {port}: {open} connection(s) still open after drainTimeout ({}); stopping it anyway",
            t.drain_timeout
        )
    };
    append_log_line(&run.log, &line);
    let name = traffic::slot_name(process, port);
    let pm2 = &*tools.ports.pm2;
    let running = pm2
        .jlist()
        .await
        .map_err(|e| pm2_error(kind, e))?
        .iter()
        .any(|i| i.name == name);
    if running {
        pm2.delete(&name).await.map_err(|e| pm2_error(kind, e))?;
    }
    forget_warm(t, port, &run.log);
    Ok(())
}

/// The upstream file stops naming `port` as warm once it is retired: the same text
/// without the warm line (a comment: nginx needs no reload for it).
fn forget_warm(t: &shipshape_spec::app::Traffic, port: u16, log: &std::path::Path) {
    let file = std::path::Path::new(&t.upstream_file);
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    if traffic::warm_of(&text).is_none_or(|w| w.port != port) {
        return;
    }
    let kept: String = text
        .lines()
        .filter(|l| !traffic::is_warm_line(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Err(e) = nginx::write_atomically(file, &kept) {
        append_log_line(
            log,
            &format!("!! slot-retire: could not drop the warm line: {e}"),
        );
    }
}
