//! The OpenAPI 3 document, generated from the same kind list and types that build the
//! routes, so that it cannot drift from the code. `docs/openapi.json` is its committed copy.

use dialtone_types::auth::{AuditRecord, NewToken, RetiredOrg, TokenInfo, TokenRequest, WhoAmI};
use dialtone_types::cluster_types::ClusterTypeInfo;
use dialtone_types::{Kind, List, Object, Status};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::resources::route_paths;

pub struct Document {
    generator: SchemaGenerator,
    paths: Map<String, Value>,
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

impl Document {
    pub fn new() -> Self {
        Document {
            generator: SchemaSettings::openapi3().into_generator(),
            paths: Map::new(),
        }
    }

    fn schema<T: JsonSchema>(&mut self) -> Value {
        self.generator.subschema_for::<T>().to_value()
    }

    fn errors(&mut self) -> Value {
        let status = self.schema::<Status>();
        json!({"default": {"description": "An error, as a Status", "content": {"application/json": {"schema": status}}}})
    }

    fn respond(&mut self, code: &str, description: &str, schema: Value) -> Value {
        let mut responses = self.errors();
        responses[code] = json!({"description": description, "content": {"application/json": {"schema": schema}}});
        responses
    }

    fn operation(&mut self, path: &str, method: &str, operation: Value) {
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({"parameters": path_parameters(path)}));
        entry[method] = operation;
    }

    /// The operations of one kind of the tree.
    pub fn describe_kind<K: Kind>(&mut self) {
        let info = K::INFO;
        let (collection, item) = route_paths(info);
        let object = self.schema::<Object<K, K::Status>>();
        let list = self.schema::<List<Object<K, K::Status>>>();
        let tags = json!([info.kind]);
        let list_params = json!([
            query(
                "labelSelector",
                "Only objects whose labels match, e.g. `tier=web,env!=dev`",
                json!({"type": "string"})
            ),
            query(
                "limit",
                "At most this many objects; the rest through `continue`",
                json!({"type": "integer", "minimum": 0})
            ),
            query(
                "continue",
                "The token from the previous page",
                json!({"type": "string"})
            ),
            query(
                "watch",
                "Stream changes as newline-delimited JSON WatchEvents instead",
                json!({"type": "boolean"})
            ),
            query(
                "resourceVersion",
                "With watch: stream changes after this revision (410 if compacted)",
                json!({"type": "string"})
            ),
        ]);
        let responses = self.respond(
            "200",
            "One page of objects (or, with watch, a stream of events)",
            list,
        );
        self.operation(&collection, "get", json!({"operationId": format!("list{}", info.kind), "tags": tags, "parameters": list_params, "responses": responses}));
        let responses = self.respond("201", "Created", object.clone());
        self.operation(&collection, "post", json!({"operationId": format!("create{}", info.kind), "tags": tags, "requestBody": {"required": true, "content": {"application/json": {"schema": object}}}, "responses": responses}));
        let responses = self.respond("200", "The object", object.clone());
        self.operation(&item, "get", json!({"operationId": format!("get{}", info.kind), "tags": tags, "responses": responses}));
        let responses = self.respond("200", "Patched", object.clone());
        self.operation(&item, "patch", json!({"operationId": format!("patch{}", info.kind), "tags": tags, "description": "A JSON merge patch (RFC 7386): the fields it names change, null removes one; with metadata.resourceVersion it applies only to that version.", "requestBody": {"required": true, "content": {"application/merge-patch+json": {"schema": {"type": "object"}}}}, "responses": responses}));
        let responses = self.respond("200", "Updated", object.clone());
        self.operation(&item, "put", json!({"operationId": format!("update{}", info.kind), "tags": tags, "description": "Replaces labels, annotations, finalizers and spec; a stale metadata.resourceVersion gets 409.", "requestBody": {"required": true, "content": {"application/json": {"schema": object}}}, "responses": responses}));
        let mut responses = self.respond(
            "202",
            "Deletion pending on finalizers; the object with its deletionTimestamp",
            object.clone(),
        );
        responses["200"] = json!({"description": "Deleted"});
        self.operation(&item, "delete", json!({"operationId": format!("delete{}", info.kind), "tags": tags, "parameters": [query("cascade", "Delete the whole subtree; without it a node with children gets 409", json!({"type": "boolean"}))], "responses": responses}));
        let status_path = format!("{item}/status");
        let responses = self.respond("200", "The object", object.clone());
        self.operation(&status_path, "get", json!({"operationId": format!("get{}Status", info.kind), "tags": tags, "responses": responses}));
        let responses = self.respond("200", "Updated", object.clone());
        self.operation(&status_path, "put", json!({"operationId": format!("update{}Status", info.kind), "tags": tags, "requestBody": {"required": true, "content": {"application/json": {"schema": object}}}, "responses": responses}));
    }

    fn describe_account(&mut self) {
        let (request, token, tokens, whoami, audit) = (
            self.schema::<TokenRequest>(),
            self.schema::<NewToken>(),
            self.schema::<List<TokenInfo>>(),
            self.schema::<WhoAmI>(),
            self.schema::<List<AuditRecord>>(),
        );
        let tags = json!(["Access"]);
        let responses = self.respond("201", "The new token; its secret is shown only here", token);
        self.operation("/v1/orgs/{org}/identities/{identity}/tokens", "post", json!({"operationId": "createToken", "tags": tags, "requestBody": {"required": false, "content": {"application/json": {"schema": request}}}, "responses": responses}));
        let responses = self.respond("200", "The org's tokens, without secrets", tokens.clone());
        self.operation(
            "/v1/orgs/{org}/tokens",
            "get",
            json!({"operationId": "listTokens", "tags": tags, "responses": responses}),
        );
        let mut responses = self.errors();
        responses["200"] = json!({"description": "Revoked"});
        self.operation(
            "/v1/orgs/{org}/tokens/{id}",
            "delete",
            json!({"operationId": "revokeToken", "tags": tags, "responses": responses}),
        );
        let responses = self.respond("200", "The caller", whoami);
        self.operation(
            "/v1/whoami",
            "get",
            json!({"operationId": "whoami", "tags": tags, "responses": responses}),
        );
        let paging = json!([
            query(
                "limit",
                "At most this many records",
                json!({"type": "integer", "minimum": 0})
            ),
            query(
                "continue",
                "The token from the previous page",
                json!({"type": "string"})
            )
        ]);
        let responses = self.respond("200", "Audit records, oldest first", audit.clone());
        self.operation("/v1/orgs/{org}/audit", "get", json!({"operationId": "listAudit", "tags": ["Audit"], "parameters": paging, "responses": responses}));
        let invoice = self.schema::<dialtone_types::usage::Invoice>();
        let responses = self.respond(
            "200",
            "A line per cluster, each the sum of the month's records; closed once every second of the month is recorded",
            invoice,
        );
        self.operation(
            "/v1/orgs/{org}/invoices/{month}",
            "get",
            json!({"operationId": "getInvoice", "tags": ["Usage"], "responses": responses}),
        );
        let (billing, settings) = (
            self.schema::<dialtone_types::usage::Billing>(),
            self.schema::<dialtone_types::usage::BillingSettings>(),
        );
        let responses = self.respond(
            "200",
            "What the org pays for (its nodes' capacity or its pods' requests) and the prices in effect in every region",
            billing.clone(),
        );
        self.operation(
            "/v1/orgs/{org}/billing",
            "get",
            json!({"operationId": "getBilling", "tags": ["Usage"], "responses": responses}),
        );
        let responses = self.respond("200", "The org's billing as it now is", billing);
        self.operation("/v1/orgs/{org}/billing", "put", json!({"operationId": "setBilling", "tags": ["Usage"], "description": "Platform admins only. Records already written keep the rates they carry.", "requestBody": {"required": true, "content": {"application/json": {"schema": settings}}}, "responses": responses}));
        let report = self.schema::<dialtone_types::usage::UsageReport>();
        let responses = self.respond(
            "200",
            "Usage and cost over the range, grouped; the total is the exact sum of the rows",
            report,
        );
        self.operation("/v1/orgs/{org}/usage", "get", json!({"operationId": "getUsage", "tags": ["Usage"], "parameters": [
            query("folder", "Only this folder", json!({"type": "string"})),
            query("project", "Only this project of the folder", json!({"type": "string"})),
            query("cluster", "Only this cluster of the project", json!({"type": "string"})),
            query("from", "A day (2026-12-01), a month (2026-12) or an RFC 3339 time, UTC; default: the start of this month", json!({"type": "string"})),
            query("to", "The end, excluded; default: now. At most 400 days after from", json!({"type": "string"})),
            query("by", "none, folder, project, cluster, day, hour or namespace", json!({"type": "string"})),
        ], "responses": responses}));
        let retired = self.schema::<List<RetiredOrg>>();
        let responses = self.respond(
            "200",
            "Deleted orgs whose records are kept (platform admins only)",
            retired,
        );
        self.operation(
            "/v1/retiredorgs",
            "get",
            json!({"operationId": "listRetiredOrgs", "tags": ["Audit"], "responses": responses}),
        );
        let responses = self.respond("200", "A deleted org's audit records, oldest first", audit);
        self.operation("/v1/retiredorgs/{uid}/audit", "get", json!({"operationId": "listRetiredAudit", "tags": ["Audit"], "parameters": paging, "responses": responses}));
        let responses = self.respond(
            "200",
            "A deleted org's tokens, none of which authenticates",
            tokens,
        );
        self.operation(
            "/v1/retiredorgs/{uid}/tokens",
            "get",
            json!({"operationId": "listRetiredTokens", "tags": ["Audit"], "responses": responses}),
        );
        let (types, one_type) = (
            self.schema::<List<ClusterTypeInfo>>(),
            self.schema::<ClusterTypeInfo>(),
        );
        let responses = self.respond("200", "Every Smart Cluster type with its decisions", types);
        self.operation("/v1/clustertypes", "get", json!({"operationId": "listClusterTypes", "tags": ["ClusterType"], "responses": responses}));
        let responses = self.respond(
            "200",
            "One type's decisions, each with its value and reason",
            one_type,
        );
        self.operation("/v1/clustertypes/{type}", "get", json!({"operationId": "getClusterType", "tags": ["ClusterType"], "responses": responses}));
        let versions = self.schema::<List<dialtone_types::cluster_types::KubernetesVersionInfo>>();
        let responses = self.respond(
            "200",
            "Every Kubernetes minor of the version catalogue, with the patch each release channel offers today",
            versions,
        );
        self.operation("/v1/versions", "get", json!({"operationId": "listKubernetesVersions", "tags": ["KubernetesVersion"], "responses": responses}));
        let (request, credentials) = (
            self.schema::<crate::kube_access::CredentialsRequest>(),
            self.schema::<crate::kube_access::ClusterCredentials>(),
        );
        let responses = self.respond(
            "201",
            "A kubeconfig's worth: the cluster's endpoint, its CA and a token for the caller, scoped to the cluster",
            credentials,
        );
        self.operation("/v1/orgs/{org}/folders/{folder}/projects/{project}/clusters/{cluster}/credentials", "post", json!({"operationId": "createClusterCredentials", "tags": ["Cluster"], "requestBody": {"required": false, "content": {"application/json": {"schema": request}}}, "responses": responses}));
        let (regions, digests) = (
            self.schema::<List<crate::regions::RegionStatus>>(),
            self.schema::<crate::regions::Convergence>(),
        );
        let responses = self.respond(
            "200",
            "Every region of the control plane: whether this one reaches it, and how stale its copy of that region's objects is",
            regions,
        );
        self.operation(
            "/v1/regions",
            "get",
            json!({"operationId": "listRegions", "tags": ["Region"], "responses": responses}),
        );
        let responses = self.respond(
            "200",
            "What every region holds of every org's objects, by home region, and whether they match (platform admins)",
            digests,
        );
        self.operation(
            "/v1/regions/digests",
            "get",
            json!({"operationId": "getRegionDigests", "tags": ["Region"], "responses": responses}),
        );
        self.describe_access();
        let text =
            json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}});
        let metrics = json!({"description": "OK", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}});
        let version = json!({"description": "What is serving", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "version": {"type": "string"}, "apiVersion": {"type": "string"}, "region": {"type": "string"}, "store": {"type": "string"}}}}}});
        for (path, id, security, answer) in [
            ("/healthz", "healthz", false, &text),
            ("/readyz", "readyz", false, &text),
            ("/version", "version", false, &version),
            ("/metrics", "metrics", true, &metrics),
        ] {
            let mut operation =
                json!({"operationId": id, "tags": ["Operations"], "responses": {"200": answer}});
            if !security {
                operation["security"] = json!([]);
            }
            self.operation(path, "get", operation);
        }
    }

    /// Policies on every tree node, explain and what-if.
    fn describe_access(&mut self) {
        use dialtone_types::policy::{AccessPolicy, Explanation, WhatIf, WhatIfRequest};
        let tags = json!(["Policy"]);
        for kind in dialtone_types::kinds::TREE_KINDS {
            let (_, item) = crate::resources::route_paths(kind);
            let path = format!("{item}/policy");
            let policy = self.schema::<AccessPolicy>();
            let responses = self.respond(
                "200",
                "The node's own bindings and their etag",
                policy.clone(),
            );
            self.operation(&path, "get", json!({"operationId": format!("get{}Policy", kind.kind), "tags": tags, "responses": responses}));
            let responses = self.respond("200", "The policy as set, with its new etag; 409 if the etag sent is stale, 403 if it grants more than the caller holds", policy.clone());
            self.operation(&path, "put", json!({"operationId": format!("set{}Policy", kind.kind), "tags": tags, "requestBody": {"required": true, "content": {"application/json": {"schema": policy}}}, "responses": responses}));
        }
        let explanation = self.schema::<Explanation>();
        let responses = self.respond(
            "200",
            "Allowed or denied, and the bindings that grant it",
            explanation,
        );
        self.operation("/v1/orgs/{org}/explain", "get", json!({"operationId": "explain", "tags": tags, "parameters": [
            query("identity", "Whose access (default: the caller)", json!({"type": "string"})),
            query("verb", "get, list, watch, create, update, delete (or a Kubernetes verb)", json!({"type": "string"})),
            query("resource", "One of Dialtone's resources (clusters, policies, …) or a Kubernetes resource (pods, …)", json!({"type": "string"})),
            query("node", "The tree node, as org/folder/project/cluster/namespace names", json!({"type": "string"})),
        ], "responses": responses}));
        let (request, preview) = (self.schema::<WhatIfRequest>(), self.schema::<WhatIf>());
        let responses = self.respond("200", "Per cluster, the RBAC objects the policy would add, change and remove; nothing is applied", preview);
        self.operation("/v1/orgs/{org}/whatif", "post", json!({"operationId": "whatIf", "tags": tags, "requestBody": {"required": true, "content": {"application/json": {"schema": request}}}, "responses": responses}));
    }

    pub fn finish(mut self) -> Value {
        self.describe_account();
        let schemas = self.generator.take_definitions(true);
        json!({
            "openapi": "3.0.3",
            "info": {
                "title": "Dialtone API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Kubernetes clusters as a policy-defined service. Every request but /healthz, /readyz and /version needs `Authorization: Bearer <token>`. Errors are Status objects."
            },
            "security": [{"bearer": []}],
            "paths": self.paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
            }
        })
    }
}

impl Default for Document {
    fn default() -> Self {
        Self::new()
    }
}
