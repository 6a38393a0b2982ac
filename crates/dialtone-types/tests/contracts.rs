//! What the API's clients read from these types: wire names, status codes, the limits of
//! every checked field and the field each error names.

use dialtone_types::cluster::{ClusterCondition, NodeRole, NodeState};
use dialtone_types::kinds::{FOLDER, KINDS, MAX_GROUP_MEMBERS, PROJECT};
use dialtone_types::validation::{
    FieldReason, decode_strict, is_qualified_name, validate_meta, validate_name, validate_text,
};
use dialtone_types::{
    ApiError, Cluster, ClusterType, FieldErrors, Folder, Group, Identity, Kind, LabelSelector,
    Namespace, Object, ObjectMeta, Org, Phase, Project, Reason, ResourcePath,
};
use schemars::JsonSchema;
use serde::Deserialize;

fn fields(errors: &FieldErrors) -> Vec<&str> {
    errors.0.iter().map(|e| e.field.as_str()).collect()
}

fn reasons(errors: &FieldErrors) -> Vec<FieldReason> {
    errors.0.iter().map(|e| e.reason).collect()
}

#[test]
fn every_reason_has_its_status_code_and_back() {
    let all = [
        (Reason::BadRequest, 400),
        (Reason::Unauthorized, 401),
        (Reason::Forbidden, 403),
        (Reason::NotFound, 404),
        (Reason::MethodNotAllowed, 405),
        (Reason::Conflict, 409),
        (Reason::Gone, 410),
        (Reason::RequestEntityTooLarge, 413),
        (Reason::UnsupportedMediaType, 415),
        (Reason::Invalid, 422),
        (Reason::PreconditionRequired, 428),
        (Reason::InternalError, 500),
        (Reason::ServiceUnavailable, 503),
    ];
    for (reason, code) in all {
        assert_eq!(reason.http_code(), code, "{reason:?}");
        assert_eq!(Reason::from_http_code(code), reason, "{code}");
        assert_eq!(ApiError::new(reason, "x").code(), code);
    }
    assert_eq!(Reason::AlreadyExists.http_code(), 409);
    assert_eq!(Reason::from_http_code(418), Reason::InternalError);
}

#[test]
fn invalid_fields_are_a_422_naming_each_and_a_bad_body_a_400() {
    let mut errors = FieldErrors::default();
    assert!(errors.is_empty());
    errors.push("spec.a", FieldReason::FieldValueInvalid, "wrong");
    assert!(!errors.is_empty());
    errors.push("spec.b", FieldReason::FieldValueRequired, "missing");
    assert_eq!(errors.to_string(), "spec.a: wrong; spec.b: missing");
    let error = ApiError::invalid(errors.clone());
    assert_eq!(error.code(), 422);
    assert_eq!(error.to_status().details.causes.len(), 2);

    let mut one = FieldErrors::default();
    one.push("spec.a", FieldReason::FieldValueInvalid, "wrong");
    assert_eq!(
        ApiError::invalid(one).code(),
        422,
        "one bad field is still a bad field"
    );
    let mut body = FieldErrors::default();
    body.push("body", FieldReason::FieldValueInvalid, "not JSON");
    let error = ApiError::invalid(body);
    assert_eq!((error.code(), error.message.as_str()), (400, "not JSON"));
}

#[test]
fn wire_names_are_those_the_api_serves() {
    for phase in Phase::ALL {
        assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        assert_eq!(phase.to_string(), phase.as_str());
    }
    assert_eq!(Phase::Ready.as_str(), "Ready");
    for state in [
        NodeState::Absent,
        NodeState::Pending,
        NodeState::Running,
        NodeState::Impaired,
        NodeState::Deleting,
        NodeState::Terminated,
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        assert_eq!(state.to_string(), state.as_str());
    }
    assert_eq!(NodeState::Running.as_str(), "running");
    let conditions = [
        ClusterCondition::Ready,
        ClusterCondition::Provisioning,
        ClusterCondition::Degraded,
        ClusterCondition::Deleting,
        ClusterCondition::AccessProjected,
    ]
    .map(ClusterCondition::as_str);
    assert_eq!(
        conditions,
        [
            "Ready",
            "Provisioning",
            "Degraded",
            "Deleting",
            "AccessProjected"
        ]
    );
    assert_eq!(NodeRole::ControlPlane.to_string(), "control-plane");
    assert_eq!(NodeRole::Worker.to_string(), "worker");
}

#[test]
fn cluster_types_parse_by_name_and_say_what_they_are() {
    for t in ClusterType::ALL {
        assert_eq!(ClusterType::parse(t.name()), Ok(t));
        assert_eq!(t.to_string(), t.name());
        assert_eq!(serde_json::to_value(t).unwrap(), t.name());
    }
    assert!(
        ClusterType::Developer
            .description()
            .starts_with("One control-plane node")
    );
    assert!(
        ClusterType::Production
            .description()
            .starts_with("Three control-plane nodes")
    );
    let unknown = ClusterType::parse("huge").unwrap_err();
    assert!(unknown.contains("developer, production"), "{unknown}");
}

#[test]
fn a_cluster_needs_a_known_type_and_a_region() {
    let mut errors = FieldErrors::default();
    Cluster::default().validate(&mut errors);
    assert_eq!(fields(&errors), ["spec.type", "spec.region"]);
    assert_eq!(
        reasons(&errors),
        [
            FieldReason::FieldValueRequired,
            FieldReason::FieldValueRequired
        ]
    );
    let mut errors = FieldErrors::default();
    Cluster {
        cluster_type: "huge".into(),
        region: "us-east-1".into(),
        ..Default::default()
    }
    .validate(&mut errors);
    assert_eq!(reasons(&errors), [FieldReason::FieldValueInvalid]);
    let mut errors = FieldErrors::default();
    Cluster {
        cluster_type: "production".into(),
        region: "us-east-1".into(),
        ..Default::default()
    }
    .validate(&mut errors);
    assert!(errors.is_empty(), "{errors}");
}

#[test]
fn an_address_plan_may_be_exactly_one_cluster_network() {
    use dialtone_types::cluster::parse_address_pool;
    assert!(parse_address_pool("10.7.0.0/16").is_ok());
    assert!(parse_address_pool("10.7.0.0/17").is_err());
    assert_eq!(Org::default().address_plan(), "10.0.0.0/8");
    let own = Org {
        address_plan: "172.16.0.0/12".into(),
        ..Default::default()
    };
    assert_eq!(own.address_plan(), "172.16.0.0/12");
    let mut errors = FieldErrors::default();
    own.validate(&mut errors);
    assert!(errors.is_empty(), "{errors}");
    Org {
        address_plan: "10.1.0.0/8".into(),
        ..Default::default()
    }
    .validate(&mut errors);
    assert_eq!(fields(&errors), ["spec.addressPlan"]);
}

#[test]
fn display_texts_are_bounded_for_every_tree_kind() {
    let long = |n: usize| "x".repeat(n);
    let check = |validate: &dyn Fn(&mut FieldErrors)| {
        let mut errors = FieldErrors::default();
        validate(&mut errors);
        errors
    };
    let ok_folder = Folder {
        display_name: long(256),
        description: long(4096),
    };
    assert!(check(&|e| ok_folder.validate(e)).is_empty());
    let folder = Folder {
        display_name: long(257),
        description: long(4097),
    };
    let project = Project {
        display_name: long(257),
        description: long(4097),
    };
    let namespace = Namespace {
        display_name: long(257),
        description: long(4097),
    };
    let org = Org {
        display_name: long(257),
        description: long(4097),
        ..Default::default()
    };
    for errors in [
        check(&|e| folder.validate(e)),
        check(&|e| project.validate(e)),
        check(&|e| namespace.validate(e)),
        check(&|e| org.validate(e)),
    ] {
        assert_eq!(fields(&errors), ["spec.displayName", "spec.description"]);
    }
    let identity = Identity {
        display_name: long(257),
        platform_admin: false,
    };
    assert_eq!(
        fields(&check(&|e| identity.validate(e))),
        ["spec.displayName"]
    );
}

#[test]
fn a_group_holds_valid_names_up_to_its_limit() {
    let members = |n: usize| (0..n).map(|i| format!("u{i}")).collect::<Vec<_>>();
    let validate = |group: Group| {
        let mut errors = FieldErrors::default();
        group.validate(&mut errors);
        errors
    };
    let full = Group {
        members: members(MAX_GROUP_MEMBERS),
        ..Default::default()
    };
    assert!(validate(full).is_empty());
    let over = Group {
        members: members(MAX_GROUP_MEMBERS + 1),
        ..Default::default()
    };
    assert_eq!(fields(&validate(over)), ["spec.members"]);
    let bad = Group {
        display_name: "x".repeat(257),
        members: vec!["ann".into(), "Bob".into()],
    };
    assert_eq!(
        fields(&validate(bad)),
        ["spec.displayName", "spec.members[1]"]
    );
}

#[test]
fn only_making_a_platform_admin_takes_installation_wide_powers() {
    let admin = Identity {
        platform_admin: true,
        ..Default::default()
    };
    assert!(admin.requires_platform_admin());
    assert!(!Identity::default().requires_platform_admin());
    assert!(!Org::default().requires_platform_admin());
    assert!(!Folder::default().requires_platform_admin());
}

#[test]
fn kinds_are_found_by_kind_and_paths_walk_the_tree() {
    for kind in KINDS {
        assert!(std::ptr::eq(
            dialtone_types::KindInfo::by_kind(kind.kind).unwrap(),
            *kind
        ));
    }
    assert!(dialtone_types::KindInfo::by_kind("Widget").is_none());
    let web = ResourcePath::org("acme")
        .child(&FOLDER, "eng")
        .child(&PROJECT, "web");
    assert_eq!(web.names().collect::<Vec<_>>(), ["acme", "eng", "web"]);
    let eng = web.parent().unwrap();
    assert_eq!(eng.to_string(), "orgs/acme/folders/eng");
    assert_eq!(eng.parent(), Some(ResourcePath::org("acme")));
    assert_eq!(ResourcePath::org("acme").parent(), None);
    let bad = ResourcePath::org("Acme").child(&FOLDER, "e_g");
    let mut errors = FieldErrors::default();
    bad.validate(&mut errors);
    assert_eq!(fields(&errors), ["path.org", "path.folder"]);
}

#[test]
fn an_empty_selector_matches_everything() {
    assert!(LabelSelector::parse("").unwrap().is_empty());
    assert!(!LabelSelector::parse("tier=gold").unwrap().is_empty());
}

#[test]
fn names_and_texts_are_refused_at_their_limits() {
    let check = |name: &str| {
        let mut errors = FieldErrors::default();
        validate_name("metadata.name", name, &mut errors);
        reasons(&errors)
    };
    assert_eq!(check(""), [FieldReason::FieldValueRequired]);
    assert_eq!(check(&"a".repeat(63)), []);
    assert_eq!(check(&"a".repeat(64)), [FieldReason::FieldValueTooLong]);
    assert_eq!(check(&"A".repeat(63)), [FieldReason::FieldValueInvalid]);

    let text = |t: &str| {
        let mut errors = FieldErrors::default();
        validate_text("spec.description", t, 5, &mut errors);
        reasons(&errors)
    };
    assert_eq!(text("héllo"), [], "characters are counted, not bytes");
    assert_eq!(text("hello!"), [FieldReason::FieldValueTooLong]);
    assert_eq!(text("a\tb\nc"), []);
    assert_eq!(text("a\u{7}"), [FieldReason::FieldValueInvalid]);
    assert_eq!(text("a\r"), [FieldReason::FieldValueInvalid]);
}

#[test]
fn qualified_names_need_a_name_and_a_dns_prefix() {
    assert!(is_qualified_name("dialtone.dev/tier"));
    assert!(!is_qualified_name("dialtone.dev/"), "a prefix alone");
    assert!(!is_qualified_name("Bad_Prefix/tier"));
    assert!(!is_qualified_name(&format!("{}/tier", "a".repeat(254))));
}

#[test]
fn annotations_are_bounded_in_total_and_need_valid_keys() {
    const LIMIT: usize = 256 * 1024;
    let check = |annotations: &[(&str, usize)]| {
        let meta = ObjectMeta {
            name: "web".into(),
            annotations: annotations
                .iter()
                .map(|(k, n)| (k.to_string(), "x".repeat(*n)))
                .collect(),
            ..Default::default()
        };
        let mut errors = FieldErrors::default();
        validate_meta(&meta, &mut errors);
        fields(&errors)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        check(&[("a", LIMIT - 1)]).is_empty(),
        "exactly at the limit"
    );
    assert!(check(&[("a", LIMIT / 2 - 1), ("b", LIMIT / 2 - 1)]).is_empty());
    assert_eq!(check(&[("a", LIMIT)]), ["metadata.annotations"]);
    assert_eq!(
        check(&[("a", LIMIT / 2), ("b", LIMIT / 2)]),
        ["metadata.annotations"]
    );
    assert_eq!(
        check(&[("ok", 1), ("not ok", 1)]),
        ["metadata.annotations.not ok"]
    );
}

/// A spec with every JSON shape, to check what strict decoding refuses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Shapes {
    #[serde(default)]
    name: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    count: i64,
    #[serde(default)]
    ratio: f64,
    #[serde(default)]
    inner: Option<Inner>,
    #[serde(default)]
    items: Vec<Inner>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Inner {
    #[serde(default)]
    size: u32,
}

#[test]
fn strict_decoding_names_each_value_of_the_wrong_shape() {
    let refused = |body: &str| {
        let errors = decode_strict::<Shapes>(body.as_bytes()).unwrap_err();
        errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
    };
    let fine = r#"{"name":"a","nickname":null,"count":-3,"ratio":2,"inner":{"size":1},"items":[{"size":2}]}"#;
    decode_strict::<Shapes>(fine.as_bytes()).unwrap();
    decode_strict::<Shapes>(br#"{"nickname":"b","ratio":0.5}"#).unwrap();
    for (body, error) in [
        (r#"{"name":5}"#, "name: expected string, not integer"),
        (
            r#"{"nickname":7}"#,
            "nickname: expected string or null, not integer",
        ),
        (r#"{"count":1.5}"#, "count: expected integer, not number"),
        (r#"{"inner":[1]}"#, "inner: expected object, not array"),
        (
            r#"{"inner":{"size":"big"}}"#,
            "inner.size: expected integer, not string",
        ),
        (r#"{"items":[[1]]}"#, "items[0]: expected object, not array"),
    ] {
        assert_eq!(refused(body), [error], "{body}");
    }
}

#[test]
fn an_object_s_schema_names_its_parts() {
    let schema = schemars::schema_for!(Object<Project>).to_value();
    let properties = schema["properties"].as_object().expect("properties");
    for part in ["apiVersion", "kind", "metadata", "spec", "status"] {
        assert!(properties.contains_key(part), "{part}: {schema:#}");
    }
}
