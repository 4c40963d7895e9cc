//! The `KeyStore` conformance suite. `suite` holds backend-neutral checks taking
//! `&dyn KeyStore`; each backend module runs every one of them against a fresh store,
//! and adds the checks only that backend can make (files, modes, reopening; for
//! PostgreSQL: concurrent migration, reconnection, TLS, SQLSTATE mapping).

mod common;

use kms_gateway::keys::{Algorithm, KeyUsage};
use kms_gateway::store::{
    Direction, KeyPatch, KeyRecord, KeyStore, KeyVersionRecord, ListQuery, OrderBy, ProjectRecord,
    StoreError,
};
use uuid::Uuid;

/// Runs each named `suite` function as a test against a store made by `$fresh`, which
/// returns `(guard, store)`; the guard (a temp dir, say) lives as long as the test.
macro_rules! conformance {
    ($backend:ident, $fresh:path; $($test:ident),* $(,)?) => {
        mod $backend {
            /// The checks this backend runs, to compare with the other backends'.
            pub const TESTS: &[&str] = &[$(stringify!($test)),*];
            $(
                #[test]
                fn $test() {
                    let (_guard, store) = $fresh();
                    super::suite::$test(&*store);
                }
            )*
        }
    };
}

conformance!(
    sqlite_suite, crate::sqlite::fresh;
    meta_is_written_once,
    meta_written_once_under_contention,
    replace_meta_is_compare_and_swap,
    projects_round_trip_and_names_are_unique,
    key_and_first_version_round_trip_every_field,
    key_names_are_unique_per_project,
    key_in_unknown_project_is_refused,
    list_keys_pages_and_counts,
    list_keys_orders_by_column_and_direction,
    list_keys_breaks_ties_by_id,
    list_keys_search_is_case_insensitive_and_literal,
    update_key_applies_only_the_patch,
    update_key_rename_conflicts,
    delete_key_removes_versions_and_returns_the_row,
    key_version_of_unknown_key_is_none,
    versions_are_added_one_at_a_time,
    check_writable_succeeds,
    concurrent_writers_all_succeed,
    nullable_patch_fields_are_set_and_cleared,
    lifecycle_candidates_are_pending_or_rotating_keys,
    identities_round_trip_and_revoke_once,
    identity_token_is_unique_and_replaced_only_while_active,
    audit_appends_chain_in_order_and_move_the_head,
    audit_appends_under_contention_keep_one_chain,
    identities_list_in_creation_order_and_need_a_project,
    universal_auth_round_trips_by_client_id_and_identity,
    universal_auth_client_id_is_unique_and_nothing_is_half_written,
    universal_auth_is_not_written_when_the_identity_conflicts,
    key_attributes_are_set_removed_and_go_with_the_key,
    access_keys_are_bounded_per_identity_and_deleted_one_by_one,
    aliases_name_one_key_per_project_and_go_with_the_key,
    audit_prune_removes_a_prefix_and_seals_a_checkpoint,
);

conformance!(
    postgres_suite, crate::postgres::fresh;
    meta_is_written_once,
    meta_written_once_under_contention,
    replace_meta_is_compare_and_swap,
    projects_round_trip_and_names_are_unique,
    key_and_first_version_round_trip_every_field,
    key_names_are_unique_per_project,
    key_in_unknown_project_is_refused,
    list_keys_pages_and_counts,
    list_keys_orders_by_column_and_direction,
    list_keys_breaks_ties_by_id,
    list_keys_search_is_case_insensitive_and_literal,
    update_key_applies_only_the_patch,
    update_key_rename_conflicts,
    delete_key_removes_versions_and_returns_the_row,
    key_version_of_unknown_key_is_none,
    versions_are_added_one_at_a_time,
    check_writable_succeeds,
    concurrent_writers_all_succeed,
    nullable_patch_fields_are_set_and_cleared,
    lifecycle_candidates_are_pending_or_rotating_keys,
    identities_round_trip_and_revoke_once,
    identity_token_is_unique_and_replaced_only_while_active,
    audit_appends_chain_in_order_and_move_the_head,
    audit_appends_under_contention_keep_one_chain,
    identities_list_in_creation_order_and_need_a_project,
    universal_auth_round_trips_by_client_id_and_identity,
    universal_auth_client_id_is_unique_and_nothing_is_half_written,
    universal_auth_is_not_written_when_the_identity_conflicts,
    key_attributes_are_set_removed_and_go_with_the_key,
    access_keys_are_bounded_per_identity_and_deleted_one_by_one,
    aliases_name_one_key_per_project_and_go_with_the_key,
    audit_prune_removes_a_prefix_and_seals_a_checkpoint,
);

#[test]
fn every_backend_runs_the_same_checks() {
    assert_eq!(sqlite_suite::TESTS, postgres_suite::TESTS);
}

pub fn project(name: &str) -> ProjectRecord {
    ProjectRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        created_at: "2024-05-01T10:00:00Z".into(),
    }
}

pub fn key(project_id: Uuid, name: &str) -> KeyRecord {
    KeyRecord {
        id: Uuid::new_v4(),
        project_id,
        name: name.into(),
        description: format!("description of {name}"),
        key_usage: KeyUsage::EncryptDecrypt,
        algorithm: Algorithm::Aes256Gcm,
        version: 1,
        is_disabled: false,
        is_reserved: false,
        customer_fragment_id: None,
        hsm_key_label: None,
        min_decryption_version: 1,
        deletion_date: None,
        rotation_period_days: None,
        exportable: false,
        protect_stopped: false,
        created_at: "2024-05-01T10:00:00Z".into(),
        updated_at: "2024-05-01T10:00:00Z".into(),
    }
}

pub fn first_version(key: &KeyRecord) -> KeyVersionRecord {
    KeyVersionRecord {
        key_id: key.id,
        version: 1,
        wrapped_material: key
            .id
            .as_bytes()
            .iter()
            .chain(b"-wrapped")
            .copied()
            .collect(),
        public_key: None,
        created_at: key.created_at.clone(),
    }
}

pub fn list(project_id: Uuid) -> ListQuery {
    ListQuery {
        project_id,
        offset: 0,
        limit: 1000,
        order_by: OrderBy::Name,
        direction: Direction::Asc,
        search: None,
    }
}

fn names(keys: &[KeyRecord]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

mod suite {
    use super::*;
    use kms_gateway::store::{AuditChain, IdentityRecord, UniversalAuthRecord};

    /// A chain that is easy to check by hand: the hash is SHA-256 of prev ‖ seq ‖ record.
    struct TestChain;
    impl AuditChain for TestChain {
        fn link(&self, previous: &[u8; 32], seq: u64, record: &str) -> [u8; 32] {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(previous);
            h.update(seq.to_be_bytes());
            h.update(record.as_bytes());
            h.finalize().into()
        }
        fn seal(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
            let mut v = seq.to_be_bytes().to_vec();
            v.extend_from_slice(&hash[..4]);
            v
        }
        fn seal_checkpoint(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
            let mut v = b"cp".to_vec();
            v.extend_from_slice(&self.seal(seq, hash));
            v
        }
    }

    pub fn identity(project: Option<Uuid>, name: &str, hash: u8) -> IdentityRecord {
        IdentityRecord {
            id: Uuid::new_v4(),
            name: name.into(),
            project_id: project,
            role: "encrypt,decrypt".into(),
            token_sha256: [hash; 32],
            created_at: "2024-05-01T10:00:00Z".into(),
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            revoked_at: None,
            tls_subject: Some(format!("CN={name}")),
        }
    }

    pub fn nullable_patch_fields_are_set_and_cleared(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let k = add_key(store, key(p.id, "k"));
        let set = KeyPatch {
            rotation_period_days: Some(Some(30)),
            deletion_date: Some(Some("2031-01-01T00:00:00Z".into())),
            ..KeyPatch::default()
        };
        let got = store
            .update_key(k.id, &set, "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.rotation_period_days, got.deletion_date.as_deref()),
            (Some(30), Some("2031-01-01T00:00:00Z"))
        );
        // Leaving them out keeps them.
        let got = store
            .update_key(k.id, &KeyPatch::default(), "2025-01-02T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.rotation_period_days, got.deletion_date.as_deref()),
            (Some(30), Some("2031-01-01T00:00:00Z"))
        );
        let clear = KeyPatch {
            rotation_period_days: Some(None),
            deletion_date: Some(None),
            ..KeyPatch::default()
        };
        let got = store
            .update_key(k.id, &clear, "2025-01-03T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.rotation_period_days, got.deletion_date.clone()),
            (None, None)
        );
        assert_eq!(store.key(k.id).unwrap(), Some(got));
    }

    pub fn lifecycle_candidates_are_pending_or_rotating_keys(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let _plain = add_key(store, key(p.id, "plain"));
        let pending = add_key(
            store,
            KeyRecord {
                deletion_date: Some("2030-01-01T00:00:00Z".into()),
                ..key(p.id, "pending")
            },
        );
        let rotating = add_key(
            store,
            KeyRecord {
                rotation_period_days: Some(7),
                ..key(p.id, "rotating")
            },
        );
        let v2 = KeyVersionRecord {
            version: 2,
            created_at: "2024-06-01T00:00:00Z".into(),
            ..first_version(&rotating)
        };
        store
            .add_key_version(&v2, "2024-06-01T00:00:00Z")
            .unwrap()
            .unwrap();
        let mut got = store.lifecycle_candidates().unwrap();
        got.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let summary: Vec<(&str, u32, &str)> = got
            .iter()
            .map(|(k, at)| (k.name.as_str(), k.version, at.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("pending", 1, pending.created_at.as_str()),
                ("rotating", 2, "2024-06-01T00:00:00Z")
            ]
        );
    }

    pub fn identities_round_trip_and_revoke_once(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let a = identity(Some(p.id), "app", 1);
        let admin = IdentityRecord {
            role: "admin".into(),
            expires_at: None,
            ..identity(None, "root", 2)
        };
        store.create_identity(&a).unwrap();
        store.create_identity(&admin).unwrap();
        assert_eq!(store.identity(a.id).unwrap(), Some(a.clone()));
        assert_eq!(store.identity(Uuid::new_v4()).unwrap(), None);
        assert_eq!(store.identity_by_token(&[1; 32]).unwrap(), Some(a.clone()));
        assert_eq!(
            store.identity_by_token(&[2; 32]).unwrap(),
            Some(admin.clone())
        );
        assert_eq!(store.identity_by_token(&[3; 32]).unwrap(), None);
        assert_eq!(
            store.identity_by_tls_subject("CN=app").unwrap(),
            Some(a.clone())
        );
        assert_eq!(store.identity_by_tls_subject("CN=nobody").unwrap(), None);
        let mut all = store.identities().unwrap();
        all.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(all, vec![a.clone(), admin.clone()]);
        let revoked = store
            .revoke_identity(a.id, "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        // A second revocation keeps the first time.
        let again = store
            .revoke_identity(a.id, "2026-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(
            store
                .identity_by_token(&[1; 32])
                .unwrap()
                .unwrap()
                .revoked_at,
            again.revoked_at
        );
        assert_eq!(
            store
                .revoke_identity(Uuid::new_v4(), "2025-01-01T00:00:00Z")
                .unwrap(),
            None
        );
        // An identity in a project that does not exist is refused.
        assert!(store
            .create_identity(&identity(Some(Uuid::new_v4()), "ghost", 9))
            .is_err());
    }

    pub fn identity_token_is_unique_and_replaced_only_while_active(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let a = identity(Some(p.id), "a", 1);
        let b = identity(Some(p.id), "b", 2);
        store.create_identity(&a).unwrap();
        store.create_identity(&b).unwrap();
        let dup = identity(Some(p.id), "dup", 1);
        assert!(matches!(
            store.create_identity(&dup),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.set_identity_token(a.id, &[2; 32]),
            Err(StoreError::Conflict(_))
        ));
        let got = store.set_identity_token(a.id, &[5; 32]).unwrap().unwrap();
        assert_eq!(got.token_sha256, [5; 32]);
        assert_eq!(store.identity_by_token(&[1; 32]).unwrap(), None);
        assert_eq!(
            store.identity_by_token(&[5; 32]).unwrap().map(|r| r.id),
            Some(a.id)
        );
        store.revoke_identity(b.id, "2025-01-01T00:00:00Z").unwrap();
        assert_eq!(store.set_identity_token(b.id, &[6; 32]).unwrap(), None);
        assert_eq!(
            store.identity_by_token(&[2; 32]).unwrap().map(|r| r.id),
            Some(b.id)
        );
    }

    pub fn audit_appends_chain_in_order_and_move_the_head(store: &dyn KeyStore) {
        assert_eq!(store.audit_head().unwrap(), None);
        assert!(store.audit_records(0, 10).unwrap().is_empty());
        let first: Vec<String> = (1..=3).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(store.append_audit(&first, &TestChain).unwrap(), 3);
        assert_eq!(
            store
                .append_audit(&["{\"n\":4}".to_string()], &TestChain)
                .unwrap(),
            4
        );
        let rows = store.audit_records(0, 10).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let mut prev = [0u8; 32];
        for r in &rows {
            assert_eq!(r.record, format!("{{\"n\":{}}}", r.seq));
            assert_eq!(r.hash, TestChain.link(&prev, r.seq, &r.record));
            prev = r.hash;
        }
        let head = store.audit_head().unwrap().unwrap();
        assert_eq!(
            (head.seq, head.hash, head.mac.clone()),
            (4, prev, TestChain.seal(4, &prev))
        );
        assert_eq!(
            store
                .audit_records(2, 1)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            vec![3]
        );
        assert!(store.audit_records(4, 10).unwrap().is_empty());
    }

    pub fn audit_prune_removes_a_prefix_and_seals_a_checkpoint(store: &dyn KeyStore) {
        assert_eq!(store.audit_checkpoint().unwrap(), None);
        let records: Vec<String> = (1..=6).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(store.append_audit(&records, &TestChain).unwrap(), 6);
        let rows = store.audit_records(0, 10).unwrap();
        // A record that is not there prunes nothing.
        assert!(store.prune_audit(7, &TestChain).is_err());
        assert_eq!(store.audit_records(0, 10).unwrap().len(), 6);
        assert_eq!(store.audit_checkpoint().unwrap(), None);

        let checkpoint = store.prune_audit(4, &TestChain).unwrap();
        assert_eq!(
            (checkpoint.seq, checkpoint.hash, checkpoint.mac.clone()),
            (4, rows[3].hash, TestChain.seal_checkpoint(4, &rows[3].hash))
        );
        assert_eq!(store.audit_checkpoint().unwrap(), Some(checkpoint));
        let left = store.audit_records(0, 10).unwrap();
        assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 6]);
        // Appends go on from the head, untouched by the prune.
        assert_eq!(
            store
                .append_audit(&["{\"n\":7}".to_string()], &TestChain)
                .unwrap(),
            7
        );
        assert_eq!(
            store.audit_records(6, 1).unwrap()[0].hash,
            TestChain.link(&rows[5].hash, 7, "{\"n\":7}")
        );
        // Pruned records cannot be pruned again; a later prune moves the checkpoint on.
        assert!(store.prune_audit(3, &TestChain).is_err());
        assert_eq!(store.prune_audit(7, &TestChain).unwrap().seq, 7);
        assert!(store.audit_records(0, 10).unwrap().is_empty());
        assert_eq!(store.audit_head().unwrap().unwrap().seq, 7);
    }

    pub fn audit_appends_under_contention_keep_one_chain(store: &dyn KeyStore) {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..10 {
                        store
                            .append_audit(&[format!("{{\"t\":{t},\"i\":{i}}}")], &TestChain)
                            .unwrap();
                    }
                });
            }
        });
        let rows = store.audit_records(0, 100).unwrap();
        assert_eq!(rows.len(), 40);
        let mut prev = [0u8; 32];
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.hash, TestChain.link(&prev, r.seq, &r.record));
            prev = r.hash;
        }
        assert_eq!(store.audit_head().unwrap().unwrap().hash, prev);
    }

    fn add_project(store: &dyn KeyStore, name: &str) -> ProjectRecord {
        let p = project(name);
        store.create_project(&p).expect("create project");
        p
    }

    fn add_key(store: &dyn KeyStore, k: KeyRecord) -> KeyRecord {
        store
            .create_key(&k, &first_version(&k))
            .expect("create key");
        k
    }

    pub fn meta_is_written_once(store: &dyn KeyStore) {
        assert_eq!(store.meta("root.wrapped").unwrap(), None);
        assert!(store.put_meta_if_absent("root.wrapped", b"first").unwrap());
        assert!(!store.put_meta_if_absent("root.wrapped", b"second").unwrap());
        assert_eq!(
            store.meta("root.wrapped").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        // Another name is independent, and an empty value is a value.
        assert!(store.put_meta_if_absent("other", b"").unwrap());
        assert_eq!(store.meta("other").unwrap(), Some(vec![]));
    }

    pub fn meta_written_once_under_contention(store: &dyn KeyStore) {
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| s.spawn(move || store.put_meta_if_absent("root.wrapped", &[i]).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(
            store.meta("root.wrapped").unwrap().map(|v| v.len()),
            Some(1)
        );
    }

    pub fn replace_meta_is_compare_and_swap(store: &dyn KeyStore) {
        assert!(
            !store.replace_meta("root.wrapped", b"old", b"new").unwrap(),
            "absent name is not replaced"
        );
        assert_eq!(
            store.meta("root.wrapped").unwrap(),
            None,
            "replace_meta must not create"
        );
        assert!(store.put_meta_if_absent("root.wrapped", b"old").unwrap());
        assert!(!store
            .replace_meta("root.wrapped", b"wrong", b"new")
            .unwrap());
        assert_eq!(
            store.meta("root.wrapped").unwrap().as_deref(),
            Some(&b"old"[..])
        );
        assert!(store.replace_meta("root.wrapped", b"old", b"new").unwrap());
        assert_eq!(
            store.meta("root.wrapped").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert!(
            !store
                .replace_meta("root.wrapped", b"old", b"newer")
                .unwrap(),
            "stale expectation"
        );
        assert_eq!(
            store.meta("root.wrapped").unwrap().as_deref(),
            Some(&b"new"[..])
        );
    }

    pub fn projects_round_trip_and_names_are_unique(store: &dyn KeyStore) {
        let p = add_project(store, "payments");
        assert_eq!(store.project(p.id).unwrap(), Some(p.clone()));
        assert_eq!(store.project(Uuid::new_v4()).unwrap(), None);
        let err = store.create_project(&project("payments")).unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("payments")),
            "{err:?}"
        );
        let same_id = ProjectRecord {
            name: "other".into(),
            ..p.clone()
        };
        assert!(matches!(
            store.create_project(&same_id),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.project(p.id).unwrap(), Some(p.clone()));
        let b = add_project(store, "billing");
        assert_eq!(store.projects().unwrap(), vec![b, p]);
    }

    pub fn key_and_first_version_round_trip_every_field(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let signing = KeyRecord {
            description: "ünïcode description".into(),
            key_usage: KeyUsage::SignVerify,
            algorithm: Algorithm::EccNistP256,
            version: 7,
            is_disabled: true,
            is_reserved: true,
            customer_fragment_id: Some("frag-1".into()),
            hsm_key_label: Some("kmsgw-hsm-label".into()),
            min_decryption_version: 1,
            exportable: true,
            created_at: "2024-01-02T03:04:05Z".into(),
            updated_at: "2024-06-07T08:09:10Z".into(),
            ..key(p.id, "signer")
        };
        let signing_v = KeyVersionRecord {
            version: 7,
            wrapped_material: (0..=255u8).collect(),
            public_key: Some(vec![0x30, 0x59, 0x00, 0xff]),
            ..first_version(&signing)
        };
        store.create_key(&signing, &signing_v).unwrap();
        let plain = add_key(store, key(p.id, "plain"));

        assert_eq!(store.key(signing.id).unwrap(), Some(signing.clone()));
        assert_eq!(
            store.key_by_name(p.id, "signer").unwrap(),
            Some(signing.clone())
        );
        assert_eq!(store.key_version(signing.id, 7).unwrap(), Some(signing_v));
        assert_eq!(store.key_version(signing.id, 1).unwrap(), None);

        let got = store.key(plain.id).unwrap().unwrap();
        assert_eq!(got, plain);
        assert_eq!(got.customer_fragment_id, None);
        let v = store.key_version(plain.id, 1).unwrap().unwrap();
        assert_eq!(v, first_version(&plain));
        assert_eq!(v.public_key, None);

        assert_eq!(store.key(Uuid::new_v4()).unwrap(), None);
        assert_eq!(
            store.key_by_name(p.id, "SIGNER").unwrap(),
            None,
            "names are case-sensitive"
        );
        assert_eq!(store.key_by_name(Uuid::new_v4(), "signer").unwrap(), None);
    }

    pub fn key_names_are_unique_per_project(store: &dyn KeyStore) {
        let a = add_project(store, "a");
        let b = add_project(store, "b");
        let original = add_key(store, key(a.id, "k"));
        let dup = key(a.id, "k");
        let err = store.create_key(&dup, &first_version(&dup)).unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("\"k\"")),
            "{err:?}"
        );
        // Nothing of the refused key was written, not even its version.
        assert_eq!(store.key(dup.id).unwrap(), None);
        assert_eq!(store.key_version(dup.id, 1).unwrap(), None);
        assert_eq!(
            store.key_by_name(a.id, "k").unwrap(),
            Some(original.clone())
        );
        // A reused id is a conflict too.
        let same_id = KeyRecord {
            name: "k2".into(),
            ..original
        };
        assert!(matches!(
            store.create_key(&same_id, &first_version(&same_id)),
            Err(StoreError::Conflict(_))
        ));

        let other = add_key(store, key(b.id, "k"));
        assert_eq!(store.key_by_name(b.id, "k").unwrap(), Some(other));
        assert_eq!(store.list_keys(&list(a.id)).unwrap().1, 1);
    }

    pub fn key_in_unknown_project_is_refused(store: &dyn KeyStore) {
        let k = key(Uuid::new_v4(), "orphan");
        let err = store.create_key(&k, &first_version(&k)).unwrap_err();
        assert!(!matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.key(k.id).unwrap(), None);
        assert_eq!(store.key_version(k.id, 1).unwrap(), None);
    }

    pub fn list_keys_pages_and_counts(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let other = add_project(store, "other");
        for i in 0..7 {
            add_key(store, key(p.id, &format!("key-{i}")));
        }
        add_key(store, key(other.id, "key-x"));

        let (all, total) = store.list_keys(&list(p.id)).unwrap();
        assert_eq!(total, 7);
        assert_eq!(
            names(&all),
            ["key-0", "key-1", "key-2", "key-3", "key-4", "key-5", "key-6"]
        );

        let page = |offset, limit| {
            store
                .list_keys(&ListQuery {
                    offset,
                    limit,
                    ..list(p.id)
                })
                .unwrap()
        };
        let (keys, total) = page(0, 3);
        assert_eq!((names(&keys), total), (vec!["key-0", "key-1", "key-2"], 7));
        let (keys, total) = page(3, 3);
        assert_eq!((names(&keys), total), (vec!["key-3", "key-4", "key-5"], 7));
        let (keys, total) = page(6, 3);
        assert_eq!((names(&keys), total), (vec!["key-6"], 7));
        let (keys, total) = page(50, 3);
        assert_eq!((keys.len(), total), (0, 7));
        let (keys, total) = page(0, 0);
        assert_eq!((keys.len(), total), (0, 7));
        let (keys, _) = page(0, u64::MAX);
        assert_eq!(keys.len(), 7);

        assert_eq!(store.list_keys(&list(Uuid::new_v4())).unwrap(), (vec![], 0));
    }

    pub fn list_keys_orders_by_column_and_direction(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        // Name order, creation order and update order all differ.
        for (name, created, updated) in [
            ("bravo", "03", "01"),
            ("alpha", "02", "03"),
            ("charlie", "01", "02"),
        ] {
            add_key(
                store,
                KeyRecord {
                    created_at: format!("2024-01-01T00:00:{created}Z"),
                    updated_at: format!("2024-02-01T00:00:{updated}Z"),
                    ..key(p.id, name)
                },
            );
        }
        let order = |order_by, direction| {
            let (keys, _) = store
                .list_keys(&ListQuery {
                    order_by,
                    direction,
                    ..list(p.id)
                })
                .unwrap();
            keys.into_iter().map(|k| k.name).collect::<Vec<_>>()
        };
        assert_eq!(
            order(OrderBy::Name, Direction::Asc),
            ["alpha", "bravo", "charlie"]
        );
        assert_eq!(
            order(OrderBy::Name, Direction::Desc),
            ["charlie", "bravo", "alpha"]
        );
        assert_eq!(
            order(OrderBy::CreatedAt, Direction::Asc),
            ["charlie", "alpha", "bravo"]
        );
        assert_eq!(
            order(OrderBy::CreatedAt, Direction::Desc),
            ["bravo", "alpha", "charlie"]
        );
        assert_eq!(
            order(OrderBy::UpdatedAt, Direction::Asc),
            ["bravo", "charlie", "alpha"]
        );
        assert_eq!(
            order(OrderBy::UpdatedAt, Direction::Desc),
            ["alpha", "charlie", "bravo"]
        );
    }

    pub fn list_keys_breaks_ties_by_id(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let mut ids: Vec<Uuid> = (0..9)
            .map(|i| add_key(store, key(p.id, &format!("k{i}"))).id)
            .collect();
        ids.sort();
        // Every key has the same created_at: paging must still visit each exactly once.
        for direction in [Direction::Asc, Direction::Desc] {
            let mut seen = vec![];
            for offset in (0..9).step_by(2) {
                let q = ListQuery {
                    offset,
                    limit: 2,
                    order_by: OrderBy::CreatedAt,
                    direction,
                    ..list(p.id)
                };
                seen.extend(store.list_keys(&q).unwrap().0.into_iter().map(|k| k.id));
            }
            let mut expected = ids.clone();
            if direction == Direction::Desc {
                expected.reverse();
            }
            assert_eq!(seen, expected, "{direction:?}");
        }
    }

    pub fn list_keys_search_is_case_insensitive_and_literal(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        for name in [
            "Payments-Main",
            "payments-backup",
            "audit",
            "a_b",
            "axb",
            "50%off",
            "50xoff",
            "back\\slash",
        ] {
            add_key(store, key(p.id, name));
        }
        let search = |s: &str, limit| {
            let q = ListQuery {
                search: Some(s.into()),
                limit,
                ..list(p.id)
            };
            let (keys, total) = store.list_keys(&q).unwrap();
            (keys.into_iter().map(|k| k.name).collect::<Vec<_>>(), total)
        };
        assert_eq!(
            search("PAYMENTS", 100),
            (vec!["Payments-Main".into(), "payments-backup".into()], 2)
        );
        assert_eq!(search("mEnTs-m", 100), (vec!["Payments-Main".into()], 1));
        // The total counts every match, not only the page.
        assert_eq!(search("payments", 1), (vec!["Payments-Main".into()], 2));
        assert_eq!(search("a_b", 100), (vec!["a_b".into()], 1));
        assert_eq!(search("_", 100), (vec!["a_b".into()], 1));
        assert_eq!(search("50%", 100), (vec!["50%off".into()], 1));
        assert_eq!(search("%", 100), (vec!["50%off".into()], 1));
        assert_eq!(search("\\", 100), (vec!["back\\slash".into()], 1));
        assert_eq!(search("nothing", 100), (vec![], 0));
        assert_eq!(search("", 100).1, 8, "an empty search matches everything");
    }

    pub fn update_key_applies_only_the_patch(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let k = add_key(
            store,
            KeyRecord {
                customer_fragment_id: Some("f".into()),
                hsm_key_label: None,
                min_decryption_version: 1,
                ..key(p.id, "k")
            },
        );

        let patch = KeyPatch {
            description: Some("new words".into()),
            ..KeyPatch::default()
        };
        let updated = store
            .update_key(k.id, &patch, "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        let expected = KeyRecord {
            description: "new words".into(),
            updated_at: "2025-01-01T00:00:00Z".into(),
            ..k.clone()
        };
        assert_eq!(updated, expected);
        assert_eq!(store.key(k.id).unwrap(), Some(expected.clone()));

        let patch = KeyPatch {
            name: Some("renamed".into()),
            is_disabled: Some(true),
            description: None,
            min_decryption_version: Some(2),
            rotation_period_days: Some(Some(90)),
            deletion_date: Some(Some("2025-02-01T00:00:00Z".into())),
            protect_stopped: Some(true),
        };
        let updated = store
            .update_key(k.id, &patch, "2025-01-02T00:00:00Z")
            .unwrap()
            .unwrap();
        let expected = KeyRecord {
            name: "renamed".into(),
            is_disabled: true,
            min_decryption_version: 2,
            rotation_period_days: Some(90),
            deletion_date: Some("2025-02-01T00:00:00Z".into()),
            protect_stopped: true,
            updated_at: "2025-01-02T00:00:00Z".into(),
            ..expected
        };
        assert_eq!(updated, expected);
        assert_eq!(
            store.key_by_name(p.id, "renamed").unwrap(),
            Some(expected.clone())
        );
        assert_eq!(store.key_by_name(p.id, "k").unwrap(), None);

        // An empty patch still records the update time; a false flag is applied, not skipped.
        let patch = KeyPatch {
            is_disabled: Some(false),
            ..KeyPatch::default()
        };
        let updated = store
            .update_key(k.id, &patch, "2025-01-03T00:00:00Z")
            .unwrap()
            .unwrap();
        assert!(!updated.is_disabled);
        let updated = store
            .update_key(k.id, &KeyPatch::default(), "2025-01-04T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(updated.updated_at, "2025-01-04T00:00:00Z");
        assert_eq!(
            store.key_version(k.id, 1).unwrap(),
            Some(first_version(&k)),
            "versions untouched"
        );

        assert_eq!(
            store
                .update_key(Uuid::new_v4(), &patch, "2025-01-05T00:00:00Z")
                .unwrap(),
            None
        );
    }

    pub fn update_key_rename_conflicts(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let other = add_project(store, "other");
        let a = add_key(store, key(p.id, "a"));
        let b = add_key(store, key(p.id, "b"));
        add_key(store, key(other.id, "c"));

        let rename = |name: &str| KeyPatch {
            name: Some(name.into()),
            description: Some("x".into()),
            ..KeyPatch::default()
        };
        let err = store
            .update_key(b.id, &rename("a"), "2025-01-01T00:00:00Z")
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("\"a\"")),
            "{err:?}"
        );
        assert_eq!(
            store.key(b.id).unwrap(),
            Some(b.clone()),
            "a refused patch changes nothing"
        );
        assert_eq!(store.key(a.id).unwrap(), Some(a.clone()));

        // Names in another project do not count, and renaming to the own name is fine.
        let moved = store
            .update_key(b.id, &rename("c"), "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(moved.name, "c");
        let same = store
            .update_key(a.id, &rename("a"), "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(same.name, "a");
    }

    pub fn access_keys_are_bounded_per_identity_and_deleted_one_by_one(store: &dyn KeyStore) {
        use kms_gateway::store::AccessKeyRecord;
        let p = add_project(store, "p");
        let a = identity(Some(p.id), "a", 0xa1);
        let b = identity(Some(p.id), "b", 0xb1);
        store.create_identity(&a).unwrap();
        store.create_identity(&b).unwrap();
        let access = |id: &str, who: Uuid, at: &str| AccessKeyRecord {
            access_key_id: id.into(),
            identity_id: who,
            wrapped_secret: format!("wrapped {id}").into_bytes(),
            created_at: at.into(),
        };
        let a1 = access("AKIAA1", a.id, "2024-05-01T10:00:00Z");
        let a2 = access("AKIAA2", a.id, "2024-05-01T10:00:01Z");
        store.create_access_key(&a2, 2).unwrap();
        store.create_access_key(&a1, 2).unwrap();
        assert_eq!(store.access_key("AKIAA1").unwrap(), Some(a1.clone()));
        assert_eq!(
            store.access_keys_of(a.id).unwrap(),
            vec![a1.clone(), a2.clone()],
            "oldest first"
        );

        // A third one for `a` is refused and not written; `b` is not affected.
        let a3 = access("AKIAA3", a.id, "2024-05-01T10:00:02Z");
        assert!(matches!(
            store.create_access_key(&a3, 2),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.access_key("AKIAA3").unwrap(), None);
        store
            .create_access_key(&access("AKIAB1", b.id, "2024-05-01T10:00:00Z"), 2)
            .unwrap();

        // An id in use, or an unknown identity, is refused.
        assert!(matches!(
            store.create_access_key(&access("AKIAB1", a.id, "2024-05-01T10:00:00Z"), 5),
            Err(StoreError::Conflict(_))
        ));
        assert!(store
            .create_access_key(&access("AKIAX", Uuid::new_v4(), "2024-05-01T10:00:00Z"), 5)
            .is_err());
        assert_eq!(store.access_key("AKIAX").unwrap(), None);

        // Deleting needs the right identity; then room for another.
        assert!(!store.delete_access_key(b.id, "AKIAA1").unwrap());
        assert!(store.delete_access_key(a.id, "AKIAA1").unwrap());
        assert!(!store.delete_access_key(a.id, "AKIAA1").unwrap());
        assert_eq!(store.access_key("AKIAA1").unwrap(), None);
        store.create_access_key(&a3, 2).unwrap();
        assert_eq!(store.access_keys_of(a.id).unwrap(), vec![a2, a3]);
        assert_eq!(store.access_keys_of(b.id).unwrap().len(), 1);
    }

    pub fn aliases_name_one_key_per_project_and_go_with_the_key(store: &dyn KeyStore) {
        use kms_gateway::store::AliasRecord;
        let p = add_project(store, "p");
        let q = add_project(store, "q");
        let k1 = add_key(store, key(p.id, "k1"));
        let k2 = add_key(store, key(p.id, "k2"));
        let kq = add_key(store, key(q.id, "kq"));
        let alias = |project: Uuid, name: &str, key: Uuid| AliasRecord {
            project_id: project,
            name: name.into(),
            key_id: key,
            created_at: "2024-05-01T10:00:00Z".into(),
            updated_at: "2024-05-01T10:00:00Z".into(),
        };
        store.create_alias(&alias(p.id, "b-name", k1.id)).unwrap();
        store.create_alias(&alias(p.id, "a-name", k1.id)).unwrap();
        store.create_alias(&alias(p.id, "other", k2.id)).unwrap();
        // The same name in another project is another alias.
        store.create_alias(&alias(q.id, "a-name", kq.id)).unwrap();
        assert!(matches!(
            store.create_alias(&alias(p.id, "a-name", k2.id)),
            Err(StoreError::Conflict(_))
        ));
        assert!(store
            .create_alias(&alias(p.id, "ghost", Uuid::new_v4()))
            .is_err());
        assert_eq!(store.alias(p.id, "ghost").unwrap(), None);

        assert_eq!(store.alias(p.id, "a-name").unwrap().unwrap().key_id, k1.id);
        assert_eq!(store.alias(q.id, "a-name").unwrap().unwrap().key_id, kq.id);
        let names = |key: Option<Uuid>| -> Vec<String> {
            store
                .aliases(p.id, key)
                .unwrap()
                .into_iter()
                .map(|a| a.name)
                .collect()
        };
        assert_eq!(names(None), ["a-name", "b-name", "other"]);
        assert_eq!(names(Some(k1.id)), ["a-name", "b-name"]);

        // Re-pointed, then deleted; unknown names are `false`.
        assert!(store
            .update_alias(p.id, "a-name", k2.id, "2024-06-01T00:00:00Z")
            .unwrap());
        let moved = store.alias(p.id, "a-name").unwrap().unwrap();
        assert_eq!(
            (moved.key_id, moved.updated_at.as_str()),
            (k2.id, "2024-06-01T00:00:00Z")
        );
        assert!(!store
            .update_alias(p.id, "absent", k2.id, "2024-06-01T00:00:00Z")
            .unwrap());
        assert!(store.delete_alias(p.id, "other").unwrap());
        assert!(!store.delete_alias(p.id, "other").unwrap());

        // A key's deletion takes its aliases with it.
        store.delete_key(k2.id).unwrap();
        assert_eq!(names(None), ["b-name"]);
        assert_eq!(store.aliases(q.id, None).unwrap().len(), 1);
    }

    pub fn key_attributes_are_set_removed_and_go_with_the_key(store: &dyn KeyStore) {
        use std::collections::BTreeMap;
        let p = add_project(store, "p");
        let k = add_key(store, key(p.id, "tagged"));
        let other = add_key(store, key(p.id, "other"));
        assert!(store.key_attributes(k.id).unwrap().is_empty());
        let set: BTreeMap<String, String> = [("a", "1"), ("b", "2")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .into();
        assert!(store.update_key_attributes(k.id, &set, &[]).unwrap());
        assert!(store
            .update_key_attributes(other.id, &[("a".to_owned(), "x".to_owned())].into(), &[])
            .unwrap());
        assert_eq!(store.key_attributes(k.id).unwrap(), set);

        // One call replaces one value and removes another; a missing name is no error.
        let change: BTreeMap<String, String> = [("a".to_owned(), "3".to_owned())].into();
        assert!(store
            .update_key_attributes(k.id, &change, &["b".into(), "absent".into()])
            .unwrap());
        assert_eq!(store.key_attributes(k.id).unwrap(), change);
        assert_eq!(
            store.key_attributes(other.id).unwrap()["a"],
            "x",
            "another key's attribute of the same name is untouched"
        );

        // An unknown key: nothing written.
        let unknown = Uuid::new_v4();
        assert!(!store.update_key_attributes(unknown, &change, &[]).unwrap());
        assert!(store.key_attributes(unknown).unwrap().is_empty());

        // Deleting the key deletes its attributes.
        store.delete_key(k.id).unwrap();
        assert!(store.key_attributes(k.id).unwrap().is_empty());
        assert_eq!(store.key_attributes(other.id).unwrap().len(), 1);
    }

    pub fn delete_key_removes_versions_and_returns_the_row(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let k = add_key(
            store,
            KeyRecord {
                customer_fragment_id: Some("f".into()),
                hsm_key_label: None,
                min_decryption_version: 1,
                ..key(p.id, "doomed")
            },
        );
        let kept = add_key(store, key(p.id, "kept"));
        assert!(store.key_version(k.id, 1).unwrap().is_some());

        assert_eq!(store.delete_key(k.id).unwrap(), Some(k.clone()));
        assert_eq!(store.key(k.id).unwrap(), None);
        assert_eq!(store.key_by_name(p.id, "doomed").unwrap(), None);
        assert_eq!(store.key_version(k.id, 1).unwrap(), None);
        assert_eq!(
            store.delete_key(k.id).unwrap(),
            None,
            "deleting twice finds nothing"
        );

        assert_eq!(
            store.key_version(kept.id, 1).unwrap(),
            Some(first_version(&kept))
        );
        assert_eq!(names(&store.list_keys(&list(p.id)).unwrap().0), ["kept"]);
        // The name is free again.
        add_key(store, key(p.id, "doomed"));
    }

    pub fn key_version_of_unknown_key_is_none(store: &dyn KeyStore) {
        assert_eq!(store.key_version(Uuid::new_v4(), 1).unwrap(), None);
        let p = add_project(store, "p");
        let k = add_key(store, key(p.id, "k"));
        assert_eq!(store.key_version(k.id, 2).unwrap(), None);
        assert_eq!(store.key_version(k.id, 0).unwrap(), None);
        assert_eq!(store.key_version(k.id, u32::MAX).unwrap(), None);
    }

    pub fn versions_are_added_one_at_a_time(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let k = add_key(store, key(p.id, "k"));
        let v2 = KeyVersionRecord {
            version: 2,
            wrapped_material: vec![2; 60],
            created_at: "2025-02-02T00:00:00Z".into(),
            ..first_version(&k)
        };
        let rotated = store
            .add_key_version(&v2, "2025-02-02T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(
            (rotated.version, rotated.updated_at.as_str()),
            (2, "2025-02-02T00:00:00Z")
        );
        assert_eq!(store.key(k.id).unwrap().unwrap().version, 2);
        assert_eq!(store.key_version(k.id, 2).unwrap(), Some(v2.clone()));
        assert_eq!(
            store.key_version(k.id, 1).unwrap(),
            Some(first_version(&k)),
            "old versions stay"
        );
        // Adding 2 again, or skipping to 4, is a conflict and changes nothing.
        assert!(matches!(
            store.add_key_version(&v2, "x"),
            Err(StoreError::Conflict(_))
        ));
        let v4 = KeyVersionRecord {
            version: 4,
            ..v2.clone()
        };
        assert!(matches!(
            store.add_key_version(&v4, "x"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.key(k.id).unwrap().unwrap().version, 2);
        let versions: Vec<u32> = store
            .key_versions(k.id)
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(versions, [1, 2]);
        // An unknown key: None, and no versions.
        let orphan = KeyVersionRecord {
            key_id: Uuid::new_v4(),
            ..v2
        };
        assert_eq!(store.add_key_version(&orphan, "x").unwrap(), None);
        assert!(store.key_versions(orphan.key_id).unwrap().is_empty());
        // Deleting the key removes every version.
        store.delete_key(k.id).unwrap();
        assert!(store.key_versions(k.id).unwrap().is_empty());
    }

    pub fn check_writable_succeeds(store: &dyn KeyStore) {
        store.check_writable().unwrap();
        store.check_writable().unwrap();
        // The probe must not disturb what callers stored.
        assert!(store.put_meta_if_absent("root.wrapped", b"r").unwrap());
        store.check_writable().unwrap();
        assert_eq!(
            store.meta("root.wrapped").unwrap().as_deref(),
            Some(&b"r"[..])
        );
    }

    pub fn identities_list_in_creation_order_and_need_a_project(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let identity = |name: &str, hash: u8, created: &str| IdentityRecord {
            id: Uuid::new_v4(),
            name: name.into(),
            project_id: Some(p.id),
            role: "encrypt".into(),
            token_sha256: [hash; 32],
            created_at: created.into(),
            expires_at: None,
            revoked_at: None,
            tls_subject: None,
        };
        let later = IdentityRecord {
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            ..identity("later", 2, "2024-05-02T00:00:00Z")
        };
        let first = identity("first", 1, "2024-05-01T00:00:00Z");
        store.create_identity(&later).unwrap();
        store.create_identity(&first).unwrap();
        assert_eq!(
            store.identity_by_token(&[1; 32]).unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            store.identity_by_token(&[2; 32]).unwrap(),
            Some(later.clone())
        );
        assert_eq!(store.identity_by_token(&[3; 32]).unwrap(), None);
        assert_eq!(store.identities().unwrap(), [first.clone(), later.clone()]);

        // A token hash is used once; an identity needs an existing project.
        let reused = identity("reused", 1, "2024-05-03T00:00:00Z");
        assert!(matches!(
            store.create_identity(&reused),
            Err(StoreError::Conflict(_))
        ));
        let orphan = IdentityRecord {
            project_id: Some(Uuid::new_v4()),
            ..identity("orphan", 4, "2024-05-03T00:00:00Z")
        };
        assert!(store.create_identity(&orphan).is_err());
        assert_eq!(store.identities().unwrap().len(), 2);

        let revoked = store
            .revoke_identity(first.id, "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        let again = store
            .revoke_identity(first.id, "2026-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(
            again.revoked_at.as_deref(),
            Some("2025-01-01T00:00:00Z"),
            "the first revocation time stays"
        );
        assert_eq!(
            store.identity_by_token(&[1; 32]).unwrap(),
            Some(again),
            "a revoked identity is still found"
        );
        assert_eq!(
            store
                .revoke_identity(Uuid::new_v4(), "2025-01-01T00:00:00Z")
                .unwrap(),
            None
        );
    }

    /// Universal-auth credentials of `identity`; `secret` fills the secret hash.
    pub fn credentials(
        identity: &IdentityRecord,
        client_id: &str,
        secret: u8,
    ) -> UniversalAuthRecord {
        UniversalAuthRecord {
            identity_id: identity.id,
            client_id: client_id.into(),
            secret_sha256: [secret; 32],
            created_at: "2024-05-01T10:00:00Z".into(),
            access_token_ttl_seconds: Some(600),
            access_token_max_ttl_seconds: None,
        }
    }

    pub fn universal_auth_round_trips_by_client_id_and_identity(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let machine = identity(Some(p.id), "machine", 1);
        let creds = credentials(&machine, "6f1c2a9e-0d4b-4e57-9a63-1f2e3d4c5b6a", 0xc1);
        store
            .create_identity_with_universal_auth(&machine, &creds)
            .unwrap();
        assert_eq!(
            store.universal_auth(&creds.client_id).unwrap(),
            Some(creds.clone())
        );
        assert_eq!(
            store.universal_auth_of(machine.id).unwrap(),
            Some(creds.clone())
        );
        // The identity itself is stored as `create_identity` stores one.
        assert_eq!(store.identity(machine.id).unwrap(), Some(machine.clone()));
        assert_eq!(
            store.identity_by_token(&machine.token_sha256).unwrap(),
            Some(machine.clone())
        );

        // An administrator (no project) too; each identity finds its own credentials.
        let admin = identity(None, "admin", 2);
        let admin_creds = credentials(&admin, "0b7e4d3c-2a19-4f86-b5e4-7c6d5e4f3a2b", 0xc2);
        store
            .create_identity_with_universal_auth(&admin, &admin_creds)
            .unwrap();
        assert_eq!(
            store.universal_auth(&admin_creds.client_id).unwrap(),
            Some(admin_creds.clone())
        );
        assert_eq!(
            store.universal_auth_of(admin.id).unwrap(),
            Some(admin_creds)
        );
        assert_eq!(
            store.universal_auth_of(machine.id).unwrap(),
            Some(creds.clone())
        );

        // Absent: an unknown client id (compared exactly, case included) or identity, and
        // an identity made without credentials.
        assert_eq!(store.universal_auth("no-such-client").unwrap(), None);
        assert_eq!(
            store
                .universal_auth(&creds.client_id.to_uppercase())
                .unwrap(),
            None
        );
        assert_eq!(store.universal_auth_of(Uuid::new_v4()).unwrap(), None);
        let plain = identity(Some(p.id), "plain", 3);
        store.create_identity(&plain).unwrap();
        assert_eq!(store.universal_auth_of(plain.id).unwrap(), None);

        // The credentials of a revoked identity are still found (the caller refuses them).
        store
            .revoke_identity(machine.id, "2025-01-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(
            store.universal_auth(&creds.client_id).unwrap(),
            Some(creds.clone())
        );
        assert_eq!(store.universal_auth_of(machine.id).unwrap(), Some(creds));
    }

    pub fn universal_auth_client_id_is_unique_and_nothing_is_half_written(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let first = identity(Some(p.id), "first", 1);
        let creds = credentials(&first, "client-a", 0xa1);
        store
            .create_identity_with_universal_auth(&first, &creds)
            .unwrap();

        // Another identity (its own token and subject) with the same client id.
        let second = identity(Some(p.id), "second", 2);
        let err = store
            .create_identity_with_universal_auth(&second, &credentials(&second, "client-a", 0xa2))
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("client id") && m.contains("\"client-a\"")),
            "{err:?}"
        );
        // The identity of the failed call went with its credentials.
        assert_eq!(store.identity(second.id).unwrap(), None);
        assert_eq!(store.identity_by_token(&second.token_sha256).unwrap(), None);
        assert_eq!(store.identity_by_tls_subject("CN=second").unwrap(), None);
        assert_eq!(store.universal_auth_of(second.id).unwrap(), None);
        assert_eq!(store.universal_auth("client-a").unwrap(), Some(creds));
        assert_eq!(store.identities().unwrap(), [first]);

        // Nothing of it is left to block the same identity with a free client id.
        let retry = credentials(&second, "client-b", 0xa2);
        store
            .create_identity_with_universal_auth(&second, &retry)
            .unwrap();
        assert_eq!(store.universal_auth_of(second.id).unwrap(), Some(retry));
        assert_eq!(store.identity(second.id).unwrap(), Some(second));
    }

    pub fn universal_auth_is_not_written_when_the_identity_conflicts(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        let taken = identity(Some(p.id), "taken", 1);
        store.create_identity(&taken).unwrap();
        let nothing_written = |candidate: &IdentityRecord, client_id: &str| {
            assert_eq!(
                store.universal_auth(client_id).unwrap(),
                None,
                "{client_id}"
            );
            if candidate.id != taken.id {
                assert_eq!(store.identity(candidate.id).unwrap(), None, "{client_id}");
            }
            assert_eq!(
                store.universal_auth_of(candidate.id).unwrap(),
                None,
                "{client_id}"
            );
            assert_eq!(
                store.identities().unwrap(),
                std::slice::from_ref(&taken),
                "{client_id}"
            );
        };

        // The token hash of another identity.
        let same_token = identity(Some(p.id), "same-token", 1);
        let err = store
            .create_identity_with_universal_auth(
                &same_token,
                &credentials(&same_token, "client-token", 0xb1),
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("token")),
            "{err:?}"
        );
        nothing_written(&same_token, "client-token");

        // The TLS subject of another identity.
        let same_subject = IdentityRecord {
            tls_subject: taken.tls_subject.clone(),
            ..identity(Some(p.id), "same-subject", 2)
        };
        let err = store
            .create_identity_with_universal_auth(
                &same_subject,
                &credentials(&same_subject, "client-subject", 0xb2),
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("TLS subject") && m.contains("CN=taken")),
            "{err:?}"
        );
        nothing_written(&same_subject, "client-subject");

        // The id of another identity: that one gets no credentials either.
        let same_id = IdentityRecord {
            id: taken.id,
            ..identity(Some(p.id), "same-id", 3)
        };
        let err = store
            .create_identity_with_universal_auth(
                &same_id,
                &credentials(&same_id, "client-id", 0xb3),
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains(&taken.id.to_string())),
            "{err:?}"
        );
        nothing_written(&same_id, "client-id");

        // A project that does not exist, and credentials of another identity: refused.
        let missing = Uuid::new_v4();
        let orphan = identity(Some(missing), "orphan", 4);
        let err = store
            .create_identity_with_universal_auth(
                &orphan,
                &credentials(&orphan, "client-orphan", 0xb4),
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m.contains(&missing.to_string())),
            "{err:?}"
        );
        nothing_written(&orphan, "client-orphan");
        let mismatched = identity(Some(p.id), "mismatched", 5);
        let err = store
            .create_identity_with_universal_auth(
                &mismatched,
                &credentials(&same_token, "client-mismatched", 0xb5),
            )
            .unwrap_err();
        assert!(matches!(&err, StoreError::Other(_)), "{err:?}");
        nothing_written(&mismatched, "client-mismatched");
        assert_eq!(store.universal_auth_of(same_token.id).unwrap(), None);
    }

    pub fn concurrent_writers_all_succeed(store: &dyn KeyStore) {
        let p = add_project(store, "p");
        std::thread::scope(|s| {
            for t in 0..8 {
                s.spawn(move || {
                    for i in 0..25 {
                        add_key(store, key(p.id, &format!("t{t}-k{i:02}")));
                    }
                });
            }
            // Readers run alongside and never see more than was written.
            for _ in 0..2 {
                s.spawn(move || {
                    for _ in 0..50 {
                        let (keys, total) = store.list_keys(&list(p.id)).unwrap();
                        assert!(
                            total <= 200 && keys.len() as u64 == total,
                            "{total} / {}",
                            keys.len()
                        );
                    }
                });
            }
        });
        let (keys, total) = store.list_keys(&list(p.id)).unwrap();
        assert_eq!(total, 200);
        let mut unique: Vec<_> = keys.iter().map(|k| k.id).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 200);
        assert!(keys
            .iter()
            .all(|k| store.key_version(k.id, 1).unwrap().is_some()));
    }
}

mod sqlite {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use kms_gateway::store::SqliteStore;

    use super::*;

    pub fn fresh() -> (tempfile::TempDir, Box<dyn KeyStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("kms.db")).unwrap();
        (dir, Box::new(store))
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let p = project("p");
        let k = KeyRecord {
            customer_fragment_id: Some("f".into()),
            hsm_key_label: None,
            min_decryption_version: 1,
            ..key(p.id, "k")
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_project(&p).unwrap();
            store.create_key(&k, &first_version(&k)).unwrap();
            assert!(store.put_meta_if_absent("root.wrapped", b"irk").unwrap());
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.project(p.id).unwrap(), Some(p.clone()));
        assert_eq!(store.key(k.id).unwrap(), Some(k.clone()));
        assert_eq!(store.key_version(k.id, 1).unwrap(), Some(first_version(&k)));
        assert_eq!(
            store.meta("root.wrapped").unwrap().as_deref(),
            Some(&b"irk"[..])
        );
        assert!(!store.put_meta_if_absent("root.wrapped", b"again").unwrap());
    }

    #[test]
    fn creates_missing_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/kms.db");
        let store = SqliteStore::open(&path).unwrap();
        store.check_writable().unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn garbage_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        // Deterministic noise that cannot start with the SQLite header.
        let garbage: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_ne!(&garbage[..16], b"SQLite format 3\0");
        std::fs::write(&path, &garbage).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            garbage,
            "the file is left as it was"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m.contains("99")),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_rows_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let store = SqliteStore::open(&path).unwrap();
        let (bad_project, bad_version, bad_algorithm) =
            (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // Rows another tool wrote: a project id that is no UUID, a negative version, an
        // algorithm the gateway does not know.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        let insert = "INSERT INTO keys (id, project_id, name, description, key_usage, algorithm, \
                      version, is_disabled, is_reserved, created_at, updated_at) \
                      VALUES (?1, ?2, ?1, '', 'encrypt-decrypt', 'aes-256-gcm', ?3, 0, 0, '', '')";
        conn.execute(
            insert,
            rusqlite::params![bad_project.to_string(), "not-a-uuid", 1],
        )
        .unwrap();
        conn.execute(
            insert,
            rusqlite::params![bad_version.to_string(), Uuid::new_v4().to_string(), -1],
        )
        .unwrap();
        conn.execute(
            &insert.replace("'aes-256-gcm'", "'DES'"),
            rusqlite::params![bad_algorithm.to_string(), Uuid::new_v4().to_string(), 1],
        )
        .unwrap();
        drop(conn);
        for id in [bad_project, bad_version, bad_algorithm] {
            let err = store.key(id).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        }
    }

    #[test]
    fn a_store_from_before_universal_auth_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let p = project("p");
        let old = suite::identity(Some(p.id), "old", 1);
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_project(&p).unwrap();
            store.create_identity(&old).unwrap();
        }
        // Back to that release's schema: version 6, before migration 7 added the table
        // (it adds nothing else), migration 8 the key attributes, 9 the access keys
        // and aliases, 10 the exportable flag and 11 the audit checkpoint.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE audit_checkpoint; DROP TABLE key_aliases; DROP TABLE access_keys; DROP TABLE key_attributes; \
             DROP TABLE universal_auth; ALTER TABLE keys DROP COLUMN exportable; \
             ALTER TABLE keys DROP COLUMN protect_stopped; \
             PRAGMA user_version = 6;",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert!(version >= 7, "{version}");
        assert_eq!(store.identity(old.id).unwrap(), Some(old.clone()));
        assert_eq!(store.universal_auth_of(old.id).unwrap(), None);
        let new = suite::identity(Some(p.id), "new", 2);
        let creds = suite::credentials(&new, "client-new", 0xd1);
        store
            .create_identity_with_universal_auth(&new, &creds)
            .unwrap();
        assert_eq!(store.universal_auth("client-new").unwrap(), Some(creds));
    }

    #[test]
    fn database_file_mode_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let store = SqliteStore::open(&path).unwrap();
        store.check_writable().unwrap();
        assert_eq!(mode(&path), 0o600);
        let wal = dir.path().join("kms.db-wal");
        assert!(wal.exists(), "the store runs in WAL mode");
        assert_eq!(mode(&wal), 0o600);
    }

    #[test]
    fn concurrent_stores_on_one_file_share_data() {
        // Two gateways (or a gateway and the admin CLI) opening the same file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| SqliteStore::open(&path).unwrap());
            let b = s.spawn(|| SqliteStore::open(&path).unwrap());
            (a.join().unwrap(), b.join().unwrap())
        });
        let p = project("p");
        a.create_project(&p).unwrap();
        assert_eq!(b.project(p.id).unwrap(), Some(p));
        assert!(a.put_meta_if_absent("root.wrapped", b"a").unwrap());
        assert!(!b.put_meta_if_absent("root.wrapped", b"b").unwrap());
    }
}

mod postgres {
    use std::sync::Barrier;

    use kms_gateway::store::{PostgresStore, StoreOptions, StoreResult};
    use secrecy::SecretString;

    use super::common::pg::{PgCluster, PgDatabase};
    use super::*;

    pub fn fresh() -> (PgDatabase, Box<dyn KeyStore>) {
        let db = PgDatabase::new();
        let store = PostgresStore::open(db.url(), &StoreOptions::default()).unwrap();
        (db, Box::new(store))
    }

    fn open(url: &str) -> StoreResult<PostgresStore> {
        PostgresStore::open(url, &StoreOptions::default())
    }

    #[test]
    fn migrations_run_once_when_stores_open_together() {
        let db = PgDatabase::new();
        let barrier = Barrier::new(4);
        let stores: Vec<PostgresStore> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        open(db.url()).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let versions = db.query("SELECT version FROM schema_version ORDER BY version");
        let expected: Vec<Vec<String>> = (1..=PostgresStore::SCHEMA_VERSION)
            .map(|v| vec![v.to_string()])
            .collect();
        assert_eq!(versions, expected);
        // They share one schema and its data.
        let p = project("shared");
        stores[0].create_project(&p).unwrap();
        assert_eq!(stores[3].project(p.id).unwrap(), Some(p));
        assert!(stores[1].put_meta_if_absent("root.wrapped", b"a").unwrap());
        assert!(!stores[2].put_meta_if_absent("root.wrapped", b"b").unwrap());
        // Opening again applies nothing.
        drop(open(db.url()).unwrap());
        assert_eq!(
            db.query("SELECT count(*) FROM schema_version"),
            [[PostgresStore::SCHEMA_VERSION.to_string()]]
        );
    }

    #[test]
    fn data_persists_across_reopen() {
        let db = PgDatabase::new();
        let p = project("p");
        let k = key(p.id, "k");
        {
            let store = open(db.url()).unwrap();
            store.create_project(&p).unwrap();
            store.create_key(&k, &first_version(&k)).unwrap();
            assert!(store.put_meta_if_absent("root.wrapped", b"irk").unwrap());
        }
        let store = open(db.url()).unwrap();
        assert_eq!(store.key(k.id).unwrap(), Some(k.clone()));
        assert_eq!(store.key_version(k.id, 1).unwrap(), Some(first_version(&k)));
        assert!(!store.put_meta_if_absent("root.wrapped", b"again").unwrap());
    }

    #[test]
    fn a_store_from_before_universal_auth_upgrades() {
        let db = PgDatabase::new();
        let p = project("p");
        let old = suite::identity(Some(p.id), "old", 1);
        {
            let store = open(db.url()).unwrap();
            store.create_project(&p).unwrap();
            store.create_identity(&old).unwrap();
        }
        // Back to that release's schema: version 1, before migration 2 added the table
        // (it adds nothing else), migration 3 the key attributes, 4 the access keys
        // and aliases, 5 the exportable flag and 6 the audit checkpoint.
        db.sql(
            "DROP TABLE audit_checkpoint; DROP TABLE key_aliases; DROP TABLE access_keys; DROP TABLE key_attributes; \
             DROP TABLE universal_auth; ALTER TABLE keys DROP COLUMN exportable; \
             ALTER TABLE keys DROP COLUMN protect_stopped; \
             DELETE FROM schema_version WHERE version >= 2",
        );

        let store = open(db.url()).unwrap();
        assert_eq!(
            db.query("SELECT version FROM schema_version WHERE version = 2"),
            [["2"]]
        );
        assert_eq!(
            db.query("SELECT count(*) FROM schema_version"),
            [[PostgresStore::SCHEMA_VERSION.to_string()]]
        );
        assert_eq!(store.identity(old.id).unwrap(), Some(old.clone()));
        assert_eq!(store.universal_auth_of(old.id).unwrap(), None);
        let new = suite::identity(Some(p.id), "new", 2);
        let creds = suite::credentials(&new, "client-new", 0xd1);
        store
            .create_identity_with_universal_auth(&new, &creds)
            .unwrap();
        assert_eq!(store.universal_auth("client-new").unwrap(), Some(creds));
    }

    #[test]
    fn newer_schema_is_refused() {
        let db = PgDatabase::new();
        drop(open(db.url()).unwrap());
        db.sql("INSERT INTO schema_version (version) VALUES (99)");
        let err = open(db.url()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m.contains("99")),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_rows_are_corrupt() {
        let db = PgDatabase::new();
        let store = open(db.url()).unwrap();
        let p = project("p");
        store.create_project(&p).unwrap();
        let k = key(p.id, "k");
        store.create_key(&k, &first_version(&k)).unwrap();
        // A row another tool wrote: a version no u32 holds.
        db.sql(&format!(
            "UPDATE keys SET version = -1 WHERE id = '{}'",
            k.id
        ));
        let err = store.key(k.id).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        db.sql(&format!(
            "UPDATE keys SET version = 4294967296 WHERE id = '{}'",
            k.id
        ));
        let err = store.list_keys(&list(p.id)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn lost_connections_are_unavailable_then_reconnected() {
        let cluster = PgCluster::start();
        let store = open(&cluster.url()).unwrap();
        let p = project("p");
        store.create_project(&p).unwrap();
        store.check_writable().unwrap();

        // The server restarts: the pooled connection is dead. The call that finds out
        // fails as Unavailable; the next one connects anew, with no reopening.
        cluster.restart();
        let err = store.project(p.id).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert_eq!(store.project(p.id).unwrap(), Some(p.clone()));
        store.check_writable().unwrap();

        // The server is down: every call is Unavailable (no hang, no panic) until it is
        // back, and then calls work again.
        cluster.stop();
        for _ in 0..3 {
            let err = store.check_writable().unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        }
        let err = store.create_project(&project("q")).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        cluster.start_again();
        // At most one more call may meet a connection made before the stop.
        let after: Vec<bool> = (0..3).map(|_| store.check_writable().is_ok()).collect();
        assert!(after[1] && after[2], "{after:?}");
        assert_eq!(store.project(p.id).unwrap(), Some(p));
        let q = project("q");
        store.create_project(&q).unwrap();
        assert_eq!(store.project(q.id).unwrap(), Some(q));
    }

    /// `url` with `param` (already percent-encoded) added to its query.
    fn with_param(url: &str, param: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{param}")
    }

    #[test]
    fn timed_out_statements_are_unavailable_and_url_options_apply() {
        use std::time::{Duration, Instant};
        let db = PgDatabase::new();
        // The URL's own `options` replace the store's 30 s statement timeout.
        let store = open(&with_param(
            db.url(),
            "options=-c%20statement_timeout%3D500ms",
        ))
        .unwrap();
        store.check_writable().unwrap();
        let url = db.url().to_owned();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
            let mut tx = client.transaction().unwrap();
            tx.batch_execute("LOCK TABLE meta IN ACCESS EXCLUSIVE MODE")
                .unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            tx.commit().unwrap();
        });
        is_locked.recv().unwrap();
        let started = Instant::now();
        let err = store.meta("root.wrapped").unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1400),
            "{:?}",
            started.elapsed()
        );
        holder.join().unwrap();
        // A cancelled statement leaves the connection usable.
        assert_eq!(store.meta("root.wrapped").unwrap(), None);
    }

    #[test]
    fn unreachable_server_is_unavailable_at_open() {
        let cluster = PgCluster::start();
        let url = cluster.url();
        cluster.stop();
        let err = open(&url).unwrap_err();
        assert!(matches!(&err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains(cluster.password()), "{err}");
    }

    #[test]
    fn unique_violations_in_races_are_conflicts() {
        let db = PgDatabase::new();
        let store = open(db.url()).unwrap();
        let p = project("p");
        store.create_project(&p).unwrap();
        // Many writers at once: the database's unique rules decide (SQLSTATE 23505),
        // and each loser sees a Conflict naming the rule, never another error.
        let race = |make: &(dyn Fn(usize) -> KeyRecord + Sync)| -> (usize, Vec<StoreError>) {
            let barrier = Barrier::new(8);
            let results: Vec<StoreResult<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let barrier = &barrier;
                        let store = &store;
                        s.spawn(move || {
                            let k = make(i);
                            barrier.wait();
                            store.create_key(&k, &first_version(&k))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let wins = results.iter().filter(|r| r.is_ok()).count();
            (wins, results.into_iter().filter_map(Result::err).collect())
        };
        let (wins, errors) = race(&|_| key(p.id, "same-name"));
        assert_eq!(wins, 1);
        assert!(
            errors
                .iter()
                .all(|e| matches!(e, StoreError::Conflict(m) if m.contains("\"same-name\""))),
            "{errors:?}"
        );
        let (wins, errors) = race(&|i| KeyRecord {
            hsm_key_label: Some("one-token-object".into()),
            ..key(p.id, &format!("hsm-{i}"))
        });
        assert_eq!(wins, 1);
        assert!(
            errors
                .iter()
                .all(|e| matches!(e, StoreError::Conflict(m) if m.contains("one-token-object"))),
            "{errors:?}"
        );
        assert_eq!(store.list_keys(&list(p.id)).unwrap().1, 2);

        // Concurrent rotations of one key: exactly one adds version 2.
        let k = store.key_by_name(p.id, "same-name").unwrap().unwrap();
        let v2 = KeyVersionRecord {
            version: 2,
            ..first_version(&k)
        };
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| s.spawn(|| store.add_key_version(&v2, "2025-01-01T00:00:00Z")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::Conflict(_))));
        assert_eq!(
            store
                .key_versions(k.id)
                .unwrap()
                .into_iter()
                .map(|(v, _)| v)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn a_transaction_chosen_as_deadlock_victim_is_retried() {
        use std::time::{Duration, Instant};
        let db = PgDatabase::new();
        let store = open(&with_param(db.url(), "application_name=deadlock-victim")).unwrap();
        let p = project("p");
        store.create_project(&p).unwrap();
        let k = key(p.id, "k");
        store.create_key(&k, &first_version(&k)).unwrap();
        let v2 = KeyVersionRecord {
            version: 2,
            ..first_version(&k)
        };

        // Another session holds an uncommitted version 2 of the key, written without the
        // foreign-key check (so it holds no lock on the key's row yet). It never detects
        // deadlocks itself: the store's session must be the one to find this one.
        let mut admin = ::postgres::Client::connect(db.url(), ::postgres::NoTls).unwrap();
        let mut tx = admin.transaction().unwrap();
        tx.batch_execute(
            "SET LOCAL session_replication_role = replica; SET LOCAL deadlock_timeout = '1min'",
        )
        .unwrap();
        tx.execute(
            "INSERT INTO key_versions (key_id, version, wrapped_material, created_at) \
             VALUES ($1, 2, '\\x00', 'admin')",
            &[&k.id],
        )
        .unwrap();
        std::thread::scope(|s| {
            // The rotation locks the key's row, then waits for that version 2.
            let rotation = s.spawn(|| store.add_key_version(&v2, "2025-01-01T00:00:00Z"));
            let deadline = Instant::now() + Duration::from_secs(20);
            while db.query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'deadlock-victim' AND wait_event_type = 'Lock'",
            ) != [["1"]]
            {
                assert!(Instant::now() < deadline, "the rotation never waited");
                std::thread::sleep(Duration::from_millis(20));
            }
            // Now this session waits for the key's row: a deadlock, which the store's
            // session detects and breaks by failing its own transaction (40P01); this
            // UPDATE then goes through, which proves it.
            tx.execute(
                "UPDATE keys SET description = 'admin' WHERE id = $1",
                &[&k.id],
            )
            .unwrap();
            tx.rollback().unwrap();
            // The store ran its transaction again, and it succeeded.
            let rotated = rotation.join().unwrap().unwrap().unwrap();
            assert_eq!(rotated.version, 2);
        });
        assert_eq!(store.key_version(k.id, 2).unwrap(), Some(v2));
        assert_eq!(store.key(k.id).unwrap().unwrap().description, k.description);
    }

    #[test]
    fn a_unique_rule_added_by_an_operator_is_a_conflict_too() {
        // A constraint the store does not know by name still maps by SQLSTATE.
        let db = PgDatabase::new();
        let store = open(db.url()).unwrap();
        db.sql("CREATE UNIQUE INDEX one_description ON keys (description)");
        let p = project("p");
        store.create_project(&p).unwrap();
        let a = KeyRecord {
            description: "same".into(),
            ..key(p.id, "a")
        };
        let b = KeyRecord {
            description: "same".into(),
            ..key(p.id, "b")
        };
        store.create_key(&a, &first_version(&a)).unwrap();
        let err = store.create_key(&b, &first_version(&b)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.key(b.id).unwrap(), None);
    }

    #[test]
    fn password_from_options_and_never_in_errors() {
        let db = PgDatabase::new();
        let url = db.url().to_owned();
        let (before, after) = url.split_once('@').unwrap();
        let (user_part, password) = before.rsplit_once(':').unwrap();
        let without_password = format!("{user_part}@{after}");
        let with = |password: &str| StoreOptions {
            password: Some(SecretString::from(password.to_owned())),
            ..StoreOptions::default()
        };

        let store = PostgresStore::open(&without_password, &with(password)).unwrap();
        store.check_writable().unwrap();
        assert!(!format!("{store:?}").contains(password));

        let wrong = "wrong-password-7f3a";
        let err = PostgresStore::open(&without_password, &with(wrong)).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(wrong), "{text}");
        assert!(!matches!(err, StoreError::Conflict(_)), "{err:?}");

        let err = PostgresStore::open(&url, &with(password)).unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m.contains("both")),
            "{err:?}"
        );
        assert!(!err.to_string().contains(password));

        // Through the module's entry point, and a mistyped scheme keeps the password out.
        let store = kms_gateway::store::open(&url).unwrap();
        store.check_writable().unwrap();
        let err = kms_gateway::store::open(&url.replacen("postgres", "postgress", 1))
            .err()
            .unwrap();
        assert!(!err.to_string().contains(password), "{err}");
    }

    /// Whether the store's connection (named by `application_name`) uses TLS.
    fn uses_tls(cluster: &PgCluster, app: &str) -> Vec<Vec<String>> {
        cluster.query(&format!(
            "SELECT DISTINCT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{app}'"
        ))
    }

    #[test]
    fn tls_modes_are_honoured() {
        let cluster = PgCluster::start();
        let ca = cluster.ca();
        let ca = ca.to_str().unwrap();
        let url = |host: &str, params: &str| {
            format!(
                "postgres://kmsgw:{}@{host}:{}/kmsgw?{params}",
                cluster.password(),
                cluster.port()
            )
        };

        // verify-full: chain and name checked; the session is encrypted.
        let store = open(&url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}&application_name=full"),
        ))
        .unwrap();
        store.check_writable().unwrap();
        assert_eq!(uses_tls(&cluster, "full"), [["t"]]);
        let store = open(&url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}&application_name=byname"),
        ))
        .unwrap();
        store.check_writable().unwrap();
        assert_eq!(uses_tls(&cluster, "byname"), [["t"]]);

        // No sslmode: plain TCP.
        let plain = open(&url("127.0.0.1", "application_name=plain")).unwrap();
        plain.check_writable().unwrap();
        assert_eq!(uses_tls(&cluster, "plain"), [["f"]]);

        // require without a CA: encrypted, server not authenticated (libpq's meaning).
        let require = open(&url("127.0.0.1", "sslmode=require&application_name=req")).unwrap();
        require.check_writable().unwrap();
        assert_eq!(uses_tls(&cluster, "req"), [["t"]]);

        // A name the certificate was not issued for: verify-full refuses, verify-ca
        // (chain only) accepts. `hostaddr` sends the connection to 127.0.0.1 anyway.
        let misnamed = |mode: &str| {
            url(
                "db.invalid",
                &format!("sslmode={mode}&sslrootcert={ca}&hostaddr=127.0.0.1"),
            )
        };
        let err = open(&misnamed("verify-full")).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        open(&misnamed("verify-ca"))
            .unwrap()
            .check_writable()
            .unwrap();

        // Another CA: refused in every verifying mode.
        let other = tempfile::tempdir().unwrap();
        let made =
            std::process::Command::new(super::common::project_root().join("scripts/dev-cert.sh"))
                .arg(other.path())
                .output()
                .unwrap();
        assert!(made.status.success());
        let other_ca = other.path().join("ca.pem");
        for mode in ["verify-full", "verify-ca", "require"] {
            let err = open(&url(
                "127.0.0.1",
                &format!("sslmode={mode}&sslrootcert={}", other_ca.display()),
            ))
            .unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{mode}: {err:?}");
            assert!(!err.to_string().contains(cluster.password()));
        }
        // Modes that may silently fall back to plain text are refused outright.
        let err = open(&url("127.0.0.1", "sslmode=prefer")).unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    }
}
