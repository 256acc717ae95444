//! Each kind of change plans exactly its steps, with their reasons: the table of cases.

use super::*;

struct Case {
    name: &'static str,
    /// The desired state, and the observed state it is planned against.
    setup: fn() -> (App, Observed),
    steps: &'static [&'static str],
    /// A fragment the reason of the first step of each listed kind must contain.
    reasons: &'static [(&'static str, &'static str)],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "nothing changed",
            setup: || (app(C1), converged(&app(C1))),
            steps: &[],
            reasons: &[],
        },
        Case {
            name: "first deploy",
            setup: || {
                (
                    app(C1),
                    Observed {
                        cpus: 2,
                        desired_lockfile: Some(LOCK_A.into()),
                        package_scripts: Default::default(),
                        ..Default::default()
                    },
                )
            },
            steps: &[
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-start",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[
                ("install", "new release needs its dependencies"),
                ("switch", "nothing is live yet"),
            ],
        },
        Case {
            name: "pm2 env change only",
            setup: || {
                let mut d = app(C1);
                d.spec.processes[0]
                    .env
                    .insert("GREETING".into(), EnvValue::String("hi".into()));
                (d, converged(&app(C1)))
            },
            steps: &["pm2-reload", "pm2-save", "verify"],
            reasons: &[("pm2-reload", "env changed")],
        },
        Case {
            name: "code change with the same lockfile",
            setup: || (app(C2), converged(&app(C1))),
            steps: &[
                "fetch",
                "reuse-deps",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[
                (
                    "reuse-deps",
                    "lockfile unchanged since release 111111111111",
                ),
                ("pm2-reload", "code 111111111111 → 222222222222"),
            ],
        },
        Case {
            name: "same lockfile, but the release's node_modules is missing",
            setup: || {
                let mut obs = converged(&app(C1));
                obs.node_modules.clear();
                (app(C2), obs)
            },
            steps: &[
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[(
                "install",
                "release 111111111111 was installed from this lockfile, but it has no node_modules to reuse",
            )],
        },
        Case {
            name: "same lockfile in two releases: reused from the one with node_modules",
            setup: || {
                // C1 is live without node_modules; C3, not live, still has its own.
                let mut obs = converged(&app(C1));
                obs.node_modules.clear();
                obs.releases
                    .insert(C3.into(), Some(marker(&app(C3), LOCK_A)));
                obs.node_modules.insert(C3.into());
                (app(C2), obs)
            },
            steps: &[
                "fetch",
                "reuse-deps",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[(
                "reuse-deps",
                "lockfile unchanged since release 333333333333",
            )],
        },
        Case {
            name: "lockfile change",
            setup: || {
                let mut obs = converged(&app(C1));
                obs.desired_lockfile = Some(LOCK_B.into());
                (app(C2), obs)
            },
            steps: &[
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-reload",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[("install", "lockfile changed (aaaaaaaaaaaa → bbbbbbbbbbbb)")],
        },
        Case {
            name: "level bump only",
            setup: || {
                (
                    app_at(C1, Some("0005")),
                    converged(&app_at(C1, Some("0004"))),
                )
            },
            steps: &["backup", "migrate", "verify"],
            reasons: &[
                ("migrate", "level 0004 < 0005"),
                ("backup", "before migrating up from 0004"),
            ],
        },
        Case {
            name: "level bump with new code",
            setup: || {
                (
                    app_at(C2, Some("0005")),
                    converged(&app_at(C1, Some("0004"))),
                )
            },
            steps: &[
                "fetch",
                "reuse-deps",
                "build",
                "backup",
                "migrate",
                "switch",
                "pm2-reload",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[("migrate", "level 0004 < 0005")],
        },
        Case {
            name: "an empty database",
            setup: || {
                let mut obs = converged(&app_at(C1, Some("0001")));
                obs.migration = MigrationState::At(None);
                (app_at(C1, Some("0001")), obs)
            },
            steps: &["backup", "migrate", "verify"],
            reasons: &[("migrate", "level (empty) < 0001")],
        },
        Case {
            name: "a lower level with a driver that can go down",
            setup: || {
                (
                    app_at(C1, Some("0003")),
                    converged(&app_at(C1, Some("0004"))),
                )
            },
            steps: &["migrate", "verify"],
            reasons: &[(
                "migrate",
                "level 0004 > 0003: the document asks for a lower level",
            )],
        },
        Case {
            name: "drift: a process stopped by hand",
            setup: || {
                let mut obs = converged(&app(C1));
                obs.processes[1].status = "stopped".into();
                (app(C1), obs)
            },
            steps: &["pm2-reload", "pm2-save", "verify"],
            reasons: &[("pm2-reload", "1 of 2 instances not online (stopped)")],
        },
        Case {
            name: "drift: current moved by hand",
            setup: || {
                let mut obs = converged(&app(C1));
                obs.releases.insert("elsewhere".into(), None);
                obs.current = Some("elsewhere".into());
                (app(C1), obs)
            },
            steps: &["switch", "pm2-reload", "pm2-save", "hook", "verify"],
            reasons: &[
                ("switch", "current is elsewhere, desired 111111111111"),
                ("pm2-reload", "current was moved"),
            ],
        },
        Case {
            name: "instances 2 → 4",
            setup: || {
                let mut d = app(C1);
                d.spec.processes[0].instances = Some(Instances::Count(4));
                (d, converged(&app(C1)))
            },
            steps: &["pm2-replace", "pm2-save", "verify"],
            reasons: &[("pm2-replace", "instances 2 → 4")],
        },
        Case {
            name: "an env variable removed",
            setup: || {
                let mut with = app(C1);
                with.spec.processes[0]
                    .env
                    .insert("HEALTH_FAIL".into(), EnvValue::String("1".into()));
                (app(C1), converged(&with))
            },
            steps: &["pm2-replace", "pm2-save", "verify"],
            reasons: &[("pm2-replace", "env HEALTH_FAIL removed")],
        },
        Case {
            name: "a process we started is no longer declared",
            setup: || {
                let mut obs = converged(&app(C1));
                let mut old = obs.processes[0].clone();
                old.name = "worker".into();
                obs.processes.push(old);
                (app(C1), obs)
            },
            steps: &["pm2-delete", "pm2-save", "verify"],
            reasons: &[("pm2-delete", "no longer declared")],
        },
        Case {
            name: "a process someone else started is never touched",
            setup: || {
                let mut obs = converged(&app(C1));
                let mut foreign = obs.processes[0].clone();
                foreign.name = "someone-elses".into();
                foreign.env.clear();
                obs.processes.push(foreign);
                (app(C1), obs)
            },
            steps: &[],
            reasons: &[],
        },
        Case {
            name: "an interrupted preparation is redone",
            setup: || {
                let mut obs = Observed {
                    cpus: 2,
                    ..Default::default()
                };
                obs.releases.insert(C1.into(), None);
                (app(C1), obs)
            },
            steps: &[
                "fetch",
                "install",
                "build",
                "switch",
                "pm2-start",
                "pm2-save",
                "hook",
                "verify",
            ],
            reasons: &[("fetch", "release 111111111111 is incomplete")],
        },
        Case {
            name: "going back to a sealed release skips preparation",
            setup: || {
                let mut obs = converged(&app(C2));
                obs.releases
                    .insert(C1.into(), Some(marker(&app(C1), LOCK_A)));
                (app(C1), obs)
            },
            steps: &["switch", "pm2-reload", "pm2-save", "hook", "verify"],
            reasons: &[],
        },
        Case {
            name: "hooks changed with nothing else",
            setup: || {
                let mut d = app(C1);
                d.spec.hooks.after_switch.push("echo again".into());
                (d, converged(&app(C1)))
            },
            steps: &["hook", "hook", "verify"],
            reasons: &[("hook", "hooks changed")],
        },
    ]
}

#[test]
fn each_kind_of_change_plans_exactly_its_steps_with_reasons() {
    for case in cases() {
        let (desired, observed) = (case.setup)();
        let p = plan(&desired, &observed);
        assert!(
            p.blockers.is_empty(),
            "{}: unexpected blockers {:?}",
            case.name,
            p.blockers
        );
        assert_eq!(kinds(&p), case.steps, "{}:\n{p}", case.name);
        for (kind, fragment) in case.reasons {
            let step = p.steps.iter().find(|s| s.step.kind() == *kind).unwrap();
            assert!(
                step.reason.contains(fragment),
                "{}: {kind} reason {:?} lacks {fragment:?}",
                case.name,
                step.reason
            );
        }
    }
}
