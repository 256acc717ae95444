//! Migrations in the plan: a level a driver cannot go down to, an unreadable level.

use super::*;

#[test]
fn prisma_cannot_go_down_so_a_lower_level_is_a_note_not_a_step() {
    let mut d = app_at(C1, Some("0003"));
    d.spec.migrations.as_mut().unwrap().driver = MigrationDriver::Prisma;
    let mut obs = converged(&d);
    obs.migration = MigrationState::At(Some("0004".into()));
    let p = plan(&d, &obs);
    assert!(p.steps.is_empty(), "{p}");
    assert!(p.notes[0].contains("cannot migrate down"), "{:?}", p.notes);
}

#[test]
fn an_unreadable_level_blocks_the_plan() {
    let d = app_at(C1, Some("0003"));
    let mut obs = converged(&d);
    obs.migration = MigrationState::Unreadable("connection refused".into());
    let p = plan(&d, &obs);
    assert_eq!(
        p.blockers,
        ["cannot read the migration level: connection refused"]
    );
}
