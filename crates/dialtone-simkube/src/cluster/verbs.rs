//! The verbs: get, list and watch, create, update and patch, delete and delete a
//! collection, and the access reviews.

use std::borrow::Cow;

use super::*;

impl ClusterApi {
    pub(super) fn current(&self, info: &RequestInfo) -> KubeResult<Arc<Value>> {
        if info.resource.is_metrics() {
            let namespace = (!info.namespace.is_empty()).then_some(info.namespace.as_str());
            return self
                .metrics(&info.resource, namespace)
                .into_iter()
                .find(|m| m["metadata"]["name"] == info.name.as_str())
                .ok_or_else(|| {
                    KubeError::not_found(&info.resource.group, &info.resource.plural, &info.name)
                });
        }
        self.objects
            .get(&key(
                info.resource.stored_name(),
                &info.namespace,
                &info.name,
            ))
            .ok_or_else(|| {
                KubeError::not_found(&info.resource.group, &info.resource.plural, &info.name)
            })
    }

    pub(super) fn get(&self, info: &RequestInfo, as_table: bool) -> KubeResult<Response> {
        let object = self.current(info)?;
        if info.subresource == "scale" {
            return Ok(json_response(
                StatusCode::OK,
                &scale_of(&object, &info.resource),
            ));
        }
        let body = if as_table {
            Cow::Owned(table::render(
                &info.resource,
                std::slice::from_ref(&object),
                self.objects.revision(),
            ))
        } else {
            shown(&info.resource, &object)
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The metrics of `r`, computed now.
    fn metrics(&self, r: &ResourceType, namespace: Option<&str>) -> Vec<Arc<Value>> {
        match r.kind.as_ref() {
            "NodeMetrics" => crate::metrics::nodes(self),
            _ => crate::metrics::pods(self, namespace),
        }
    }

    pub(super) fn selected(&self, info: &RequestInfo, query: &Query) -> (Vec<Arc<Value>>, u64) {
        let namespace = (!info.namespace.is_empty()).then_some(info.namespace.as_str());
        let (items, revision) = if info.resource.is_metrics() {
            (
                self.metrics(&info.resource, namespace),
                self.objects.revision(),
            )
        } else {
            self.objects.list(&info.resource.stored_name(), namespace)
        };
        let items = items
            .into_iter()
            .filter(|o| {
                query.label_selector.matches_labels(o) && query.field_selector.matches_fields(o)
            })
            .collect();
        (items, revision)
    }

    pub(super) fn list(
        &self,
        info: &RequestInfo,
        query: &Query,
        as_table: bool,
    ) -> KubeResult<Response> {
        let (items, revision) = self.selected(info, query);
        let body = if as_table {
            table::render(&info.resource, &items, revision)
        } else {
            json!({
                "kind": format!("{}List", &info.resource.kind),
                "apiVersion": info.resource.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": items.iter().map(|o| shown(&info.resource, o)).collect::<Vec<_>>(),
            })
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    pub(super) fn watch(
        self: &Arc<Self>,
        info: &RequestInfo,
        query: &Query,
        as_table: bool,
    ) -> KubeResult<Response> {
        let resource = info.resource.clone();
        let namespace = info.namespace.clone();
        let (initial, backlog, receiver) = match query.resource_version {
            None | Some(0) => {
                let (items, revision) = self.selected(info, query);
                let (backlog, receiver) = self
                    .objects
                    .watch(revision)
                    .map_err(|_| KubeError::expired("too old resource version"))?;
                (items, backlog, receiver)
            }
            Some(after) => {
                let (backlog, receiver) = self.objects.watch(after).map_err(|_| {
                    KubeError::expired(format!("too old resource version: {after}"))
                })?;
                (Vec::new(), backlog, receiver)
            }
        };
        let labels = query.label_selector.clone();
        let fields = query.field_selector.clone();
        let name = info.name.clone();
        let stored = resource.stored_name();
        let relevant = move |change: &Change| {
            change.key.resource == stored
                && (namespace.is_empty() || change.key.namespace == namespace)
                && (name.is_empty() || change.key.name == name)
                && labels.matches_labels(&change.object)
                && fields.matches_fields(&change.object)
        };
        let encode = move |kind: EventType, object: &Value| {
            let object = if as_table {
                Cow::Owned(table::render(&resource, &[Arc::new(object.clone())], 0))
            } else {
                shown(&resource, object)
            };
            let mut line = serde_json::to_vec(&json!({"type": kind.name(), "object": object}))
                .unwrap_or_default();
            line.push(b'\n');
            Ok::<Bytes, std::convert::Infallible>(Bytes::from(line))
        };
        let first: Vec<_> = initial
            .iter()
            .map(|o| encode(EventType::Added, o))
            .chain(
                backlog
                    .iter()
                    .filter(|c| relevant(c))
                    .map(|c| encode(c.kind, &c.object)),
            )
            .collect();
        let last_sent = backlog.last().map_or(0, |c| c.revision);
        // A watcher that falls behind the changes ends, as upstream ends a watch that cannot
        // keep up: its client watches again from the last version it saw, which the log
        // keeps. Nothing is skipped silently.
        let live = tokio_stream::wrappers::BroadcastStream::new(receiver)
            .take_while(|change| futures::future::ready(change.is_ok()))
            .filter_map(move |change| {
                let out = match change {
                    Ok(change) if change.revision > last_sent && relevant(&change) => {
                        Some(encode(change.kind, &change.object))
                    }
                    _ => None,
                };
                async move { out }
            });
        let timeout = std::time::Duration::from_secs(query.timeout_seconds.unwrap_or(1800));
        let stream = futures::stream::iter(first)
            .chain(live)
            .take_until(tokio::time::sleep(timeout));
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("transfer-encoding", "chunked")
            .body(Body::from_stream(stream))
            .expect("a valid response"))
    }

    /// Creates an object; `manager` is who its fields are recorded as set by, `None` when
    /// its managed fields are already decided (an apply).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        object: Value,
        manager: Option<&str>,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = &*info.resource;
        check_kind(r, &object)?;
        let (mut object, warnings) = decode_request(r, &object, query.field_validation)?;
        if r.is_review() {
            let review = self.review(user, r, object)?;
            return Ok(json_response(StatusCode::CREATED, &review));
        }
        if !info.namespace.is_empty() {
            match object["metadata"]["namespace"].as_str() {
                Some(ns) if !ns.is_empty() && ns != info.namespace => {
                    return Err(KubeError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => object["metadata"]["namespace"] = json!(info.namespace),
            }
            if self
                .objects
                .get(&key("namespaces", "", &info.namespace))
                .is_none()
            {
                return Err(KubeError::not_found("", "namespaces", &info.namespace));
            }
        }
        if object["metadata"]["name"].as_str().unwrap_or("").is_empty()
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            object["metadata"]["name"] = json!(format!("{prefix}{}", random_suffix()));
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let object = stamp_new(object, r, &info.namespace);
        // A Service's addresses are chosen and stored under one lock.
        let _allocating = match r.plural.as_ref() {
            "services" => Some(self.allocating.lock().await),
            _ => None,
        };
        let mut object = self.admit(user, r, &info.namespace, &name, object, None)?;
        if let Some(manager) = manager {
            crate::apply::record_update(None, &mut object, r, manager, "");
        }
        webhooks::validate(
            webhook_client,
            &self.objects,
            user,
            r,
            "CREATE",
            &object,
            None,
        )
        .await?;
        if query.dry_run {
            return Ok(with_warnings(
                json_response(StatusCode::CREATED, &shown(&info.resource, &object)),
                &warnings,
            ));
        }
        let created = self
            .objects
            .create(key(r.stored_name(), &info.namespace, &name), object)
            .map_err(|_| KubeError::already_exists(&r.group, &r.plural, &name))?;
        self.wake.notify_one();
        Ok(with_warnings(
            json_response(StatusCode::CREATED, &shown(&info.resource, &created)),
            &warnings,
        ))
    }

    pub(super) async fn update(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        object: Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let current = self.current(info)?;
        if info.subresource == "scale" {
            let (object, _) = decode_as::<Scale>("Scale", "v1", &object, query.field_validation)?;
            let replicas = object["spec"]["replicas"].clone();
            let mut next = (*current).clone();
            set_scale(&mut next, &info.resource, replicas);
            if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                next["metadata"]["resourceVersion"] = json!(rv);
            }
            let stored = self
                .store_update(
                    user,
                    info,
                    next,
                    &current,
                    Some(query.manager()),
                    query,
                    webhook_client,
                )
                .await?;
            return Ok(json_response(
                StatusCode::OK,
                &scale_of(&stored, &info.resource),
            ));
        }
        check_kind(&info.resource, &object)?;
        let (object, warnings) = decode_request(&info.resource, &object, query.field_validation)?;
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        if name != info.name {
            return Err(KubeError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                info.name
            )));
        }
        let next = if info.subresource == "status" {
            let mut next = (*current).clone();
            next["status"] = object["status"].clone();
            if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                next["metadata"]["resourceVersion"] = json!(rv);
            }
            next
        } else {
            let mut next = object;
            if info.resource.subresources.contains(&"status") {
                next["status"] = current["status"].clone();
            }
            next
        };
        let stored = self
            .store_update(
                user,
                info,
                next,
                &current,
                Some(query.manager()),
                query,
                webhook_client,
            )
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &shown(&info.resource, &stored)),
            &warnings,
        ))
    }

    /// Stores `next` in place of `current`; `manager` as for [`ClusterApi::create`].
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_update(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        mut next: Value,
        current: &Value,
        manager: Option<&str>,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Arc<Value>> {
        let r = &*info.resource;
        if next["metadata"]["managedFields"].is_null() {
            next["metadata"]["managedFields"] = current["metadata"]["managedFields"].clone();
        }
        // What the server owns stays the server's.
        for field in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match current["metadata"].get(field) {
                Some(value) => next["metadata"][field] = value.clone(),
                None => {
                    next["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        next["metadata"]["namespace"] = current["metadata"]["namespace"].clone();
        if next["metadata"]["namespace"].is_null() {
            next["metadata"]
                .as_object_mut()
                .map(|m| m.remove("namespace"));
        }
        if next["metadata"]["resourceVersion"].is_null() {
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        next["apiVersion"] = json!(r.stored_api_version());
        next["kind"] = json!(&r.kind);
        if r.has_generation() && next["spec"] != current["spec"] {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            next["metadata"]["generation"] = json!(generation);
        }
        if !current["metadata"]["deletionTimestamp"].is_null() {
            let held = finalizers(current);
            let added: Vec<String> = finalizers(&next)
                .into_iter()
                .filter(|f| !held.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(KubeError::invalid(
                    &r.group,
                    &r.kind,
                    &info.name,
                    vec![(
                        "metadata.finalizers".into(),
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        let _allocating = match r.plural.as_ref() {
            "services" => Some(self.allocating.lock().await),
            _ => None,
        };
        let mut next = self.admit(user, r, &info.namespace, &info.name, next, Some(current))?;
        if let Some(manager) = manager {
            crate::apply::record_update(Some(current), &mut next, r, manager, &info.subresource);
        }
        webhooks::validate(
            webhook_client,
            &self.objects,
            user,
            r,
            "UPDATE",
            &next,
            Some(current),
        )
        .await?;
        if query.dry_run {
            return Ok(Arc::new(next));
        }
        // The last finalizer of an object being deleted lets it go.
        if !next["metadata"]["deletionTimestamp"].is_null() && finalizers(&next).is_empty() {
            let gone = self
                .objects
                .delete(&key(r.stored_name(), &info.namespace, &info.name))
                .map_err(|_| KubeError::not_found(&r.group, &r.plural, &info.name))?;
            self.wake.notify_one();
            return Ok(gone);
        }
        let stored = self
            .objects
            .update(&key(r.stored_name(), &info.namespace, &info.name), next)
            .map_err(|e| match e {
                StoreError::NotFound => KubeError::not_found(&r.group, &r.plural, &info.name),
                _ => KubeError::conflict(&r.group, &r.plural, &info.name),
            })?;
        self.wake.notify_one();
        Ok(stored)
    }

    pub(super) async fn patch(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        content_type: &str,
        patch: Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let current = self.current(info)?;
        let mut target = if info.subresource == "scale" {
            scale_of(&current, &info.resource)
        } else {
            (*current).clone()
        };
        crate::patch::apply(&mut target, content_type, &patch)?;
        if info.subresource == "scale" {
            return self.update(user, info, target, query, webhook_client).await;
        }
        // The patched object is decoded as a body would be: a patch can change its shape.
        let (mut target, warnings) =
            decode_request(&info.resource, &target, query.field_validation)?;
        if info.subresource == "status" {
            let mut next = (*current).clone();
            next["status"] = target["status"].clone();
            target = next;
        } else if info.resource.subresources.contains(&"status") {
            target["status"] = current["status"].clone();
        }
        let stored = self
            .store_update(
                user,
                info,
                target,
                &current,
                Some(query.manager()),
                query,
                webhook_client,
            )
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &shown(&info.resource, &stored)),
            &warnings,
        ))
    }

    /// Server-side apply: the configuration merged into the object as it is, or the object
    /// created from it.
    pub(super) async fn apply(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        config: Value,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = &*info.resource;
        let manager = query.field_manager.as_deref().ok_or_else(|| {
            KubeError::invalid(
                &r.group,
                &r.kind,
                &info.name,
                vec![(
                    "fieldManager".into(),
                    "Required value: is required for apply patch".into(),
                )],
            )
        })?;
        if !info.subresource.is_empty() {
            return Err(KubeError::method_not_allowed(
                "sim clusters apply configurations to objects, not to their subresources",
            ));
        }
        check_kind(r, &config)?;
        if config["apiVersion"].is_null() || config["kind"].is_null() {
            return Err(KubeError::bad_request(
                "apiVersion and kind are required in an apply configuration",
            ));
        }
        let name = config["metadata"]["name"].as_str().unwrap_or("");
        if name != info.name {
            return Err(KubeError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                info.name
            )));
        }
        // The configuration is decoded as a body is: unknown fields refused or dropped.
        let (config, warnings) = decode_request(r, &config, query.field_validation)?;
        let key = key(r.stored_name(), &info.namespace, &info.name);
        let Some(current) = self.objects.get(&key) else {
            let object = crate::apply::apply(None, &config, r, manager, query.force)?;
            let created = self
                .create(user, info, object, None, query, webhook_client)
                .await?;
            return Ok(with_warnings(created, &warnings));
        };
        let mut next = crate::apply::apply(Some(&current), &config, r, manager, query.force)?;
        if r.subresources.contains(&"status") {
            next["status"] = current["status"].clone();
        }
        let stored = self
            .store_update(user, info, next, &current, None, query, webhook_client)
            .await?;
        Ok(with_warnings(
            json_response(StatusCode::OK, &shown(&info.resource, &stored)),
            &warnings,
        ))
    }

    pub(super) async fn delete(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = &*info.resource;
        let current = self.current(info)?;
        webhooks::validate(
            webhook_client,
            &self.objects,
            user,
            r,
            "DELETE",
            &current,
            Some(&current),
        )
        .await?;
        if query.dry_run {
            return Ok(json_response(StatusCode::OK, &current));
        }
        let deleted = self
            .remove(key(r.stored_name(), &info.namespace, &info.name))
            .map_err(|_| KubeError::not_found(&r.group, &r.plural, &info.name))?;
        if r.plural == "namespaces" {
            // Everything in the namespace goes with it.
            for other in self.served().iter().filter(|r| r.namespaced) {
                for object in self.objects.list(&other.stored_name(), Some(&info.name)).0 {
                    let name = object["metadata"]["name"].as_str().unwrap_or("");
                    let _ = self.remove(key(other.stored_name(), &info.name, name));
                }
            }
        }
        if r.plural == crate::custom::DEFINITIONS {
            // And every object of a definition, as upstream's cleanup finalizer does.
            for object in self.objects.list(&info.name, None).0 {
                let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
                let name = object["metadata"]["name"].as_str().unwrap_or("");
                let _ = self.objects.delete(&key(info.name.clone(), ns, name));
            }
        }
        self.wake.notify_one();
        Ok(json_response(
            StatusCode::OK,
            &shown(&info.resource, &deleted),
        ))
    }

    /// Deletes an object, or, while finalizers hold it, marks it as being deleted: those
    /// who put them there clean up and take them away, and the last one lets it go.
    fn remove(&self, k: ObjectKey) -> Result<Arc<Value>, StoreError> {
        let current = self.objects.get(&k).ok_or(StoreError::NotFound)?;
        if finalizers(&current).is_empty() {
            return self.objects.delete(&k);
        }
        if !current["metadata"]["deletionTimestamp"].is_null() {
            return Ok(current);
        }
        let mut marked = (*current).clone();
        marked["metadata"]["deletionTimestamp"] = json!(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        self.objects.update(&k, marked)
    }

    pub(super) async fn delete_collection(
        self: &Arc<Self>,
        user: &UserInfo,
        info: &RequestInfo,
        query: &Query,
        webhook_client: &webhooks::Caller,
    ) -> KubeResult<Response> {
        let r = &*info.resource;
        let (items, revision) = self.selected(info, query);
        for object in &items {
            webhooks::validate(
                webhook_client,
                &self.objects,
                user,
                r,
                "DELETE",
                object,
                Some(object),
            )
            .await?;
        }
        if !query.dry_run {
            for object in &items {
                let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
                let name = object["metadata"]["name"].as_str().unwrap_or("");
                let _ = self.remove(key(r.stored_name(), ns, name));
            }
        }
        self.wake.notify_one();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", &r.kind), "apiVersion": r.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": items.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
            }),
        ))
    }

    /// Answers a SelfSubjectAccessReview or SubjectAccessReview.
    pub(super) fn review(
        &self,
        caller: &UserInfo,
        r: &ResourceType,
        mut review: Value,
    ) -> KubeResult<Value> {
        let spec = &review["spec"];
        let subject = if r.kind == "SelfSubjectAccessReview" {
            caller.clone()
        } else {
            UserInfo {
                name: spec["user"].as_str().unwrap_or("").to_string(),
                groups: spec["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect(),
            }
        };
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let request = if let Some(attrs) = spec.get("resourceAttributes").filter(|a| a.is_object())
        {
            rbac::Request::Resource {
                verb: text(&attrs["verb"]),
                namespace: text(&attrs["namespace"]),
                api_group: text(&attrs["group"]),
                resource: text(&attrs["resource"]),
                subresource: text(&attrs["subresource"]),
                name: text(&attrs["name"]),
            }
        } else if let Some(attrs) = spec.get("nonResourceAttributes").filter(|a| a.is_object()) {
            rbac::Request::NonResource {
                verb: text(&attrs["verb"]),
                path: text(&attrs["path"]),
            }
        } else {
            return Err(KubeError::invalid(
                &r.group,
                &r.kind,
                "",
                vec![(
                    "spec.resourceAttributes".into(),
                    "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                )],
            ));
        };
        let decision = self.authorize(&subject, &request);
        review["status"] = json!({"allowed": decision.allowed, "reason": decision.reason});
        review["metadata"]["creationTimestamp"] = Value::Null;
        Ok(review)
    }
}

/// An object as the version it was asked through shows it: a custom resource's objects are
/// stored in one version and served in every other by their `apiVersion` alone, as
/// upstream's `None` conversion does.
/// Borrowed unless it must change, so that lists and watches copy nothing.
fn shown<'a>(r: &ResourceType, object: &'a Value) -> Cow<'a, Value> {
    if r.custom.is_none() || object["apiVersion"] == r.api_version().as_str() {
        return Cow::Borrowed(object);
    }
    let mut object = object.clone();
    object["apiVersion"] = json!(r.api_version());
    Cow::Owned(object)
}

/// An object's finalizers.
fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}
