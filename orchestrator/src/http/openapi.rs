//! The OpenAPI 3.1 document of the JSON API, generated from what serves it: the paths from
//! [`super::api::routes`], the schemas from the messages' descriptors (with their comments),
//! in the proto3 JSON mapping pbjson speaks.

use std::sync::LazyLock;

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use prost_types::field_descriptor_proto::{Label, Type};
use serde_json::{Map, Value, json};

use super::{
    api::{Route, routes},
    schema::{self, SCHEMA, Schema},
};

/// Where the document keeps the messages' schemas.
const COMPONENTS: &str = "#/components/schemas/";

/// `GET /v1/openapi.json`; anyone may read it, as anyone may read gRPC reflection.
pub async fn serve() -> Response {
    static DOCUMENT: LazyLock<Vec<u8>> =
        LazyLock::new(|| serde_json::to_vec_pretty(&document()).unwrap_or_default());
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(route.method.as_str().to_lowercase(), operation(route));
        }
    }
    let mut schemas = Map::new();
    for (name, message) in &SCHEMA.messages {
        if message.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        schemas.insert(schema::component(name), SCHEMA.message(name, COMPONENTS));
    }
    for (name, e) in &SCHEMA.enums {
        schemas.insert(schema::component(name), schema::enumeration(e));
    }
    schemas.insert("Problem".into(), problem_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Parapet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Security response orchestration with guardrails. The JSON API speaks \
                the proto3 JSON mapping of parapet.v1, as gRPC does in protobuf; streams are \
                NDJSON, one message per line, ended by a line {\"error\": Problem} on failure.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "mutualTLS": { "type": "mutualTLS" },
            },
        },
        "security": [ { "bearer": [] }, { "mutualTLS": [] } ],
    })
}

fn reference(full_name: &str) -> Value {
    schema::reference(COMPONENTS, full_name)
}

fn operation(route: &Route) -> Value {
    let mut parameters = Vec::new();
    let in_path = route.path.contains("{intent_id}");
    if in_path {
        parameters.push(json!({
            "name": "intent_id", "in": "path", "required": true,
            "schema": { "type": "string", "format": "uuid" },
        }));
    }
    let mut op = Map::new();
    op.insert("operationId".into(), route.operation.name().into());
    op.insert("summary".into(), route.summary.into());
    op.insert(
        "x-roles".into(),
        route
            .operation
            .roles()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .into(),
    );
    if route.method == axum::http::Method::GET {
        query_parameters(&SCHEMA, route.request, "", in_path, &mut parameters);
    } else {
        op.insert(
            "requestBody".into(),
            json!({
                "required": false,
                "content": { "application/json": { "schema": reference(route.request) } },
            }),
        );
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), parameters.into());
    }
    let content = if route.streams {
        json!({ "application/x-ndjson": { "schema": reference(route.response),
            "x-stream": "one message per line" } })
    } else {
        json!({ "application/json": { "schema": reference(route.response) } })
    };
    let problem = json!({ "application/problem+json": {
        "schema": { "$ref": "#/components/schemas/Problem" } } });
    let mut responses = Map::new();
    let success = if route.operation == crate::service::Operation::Submit {
        responses.insert(
            "201".into(),
            json!({ "description": "acted, or acting", "content": content }),
        );
        responses.insert(
            "202".into(),
            json!({ "description": "awaiting approval", "content": content }),
        );
        responses.insert("403".into(), json!({ "description": "denied by the guardrails (the decision is in the problem)", "content": problem }));
        responses.insert("429".into(), json!({ "description": "denied by a budget or rate limit; see Retry-After", "content": problem }));
        "a repeat, or shadowed"
    } else {
        "the answer"
    };
    responses.insert(
        "200".into(),
        json!({ "description": success, "content": content }),
    );
    responses.insert(
        "default".into(),
        json!({ "description": "a problem (RFC 9457)", "content": problem }),
    );
    op.insert("responses".into(), responses.into());
    op.into()
}

/// A GET's request fields as query parameters; a nested message's by dotted names.
fn query_parameters(
    schema: &Schema,
    message: &str,
    prefix: &str,
    skip_intent_id: bool,
    out: &mut Vec<Value>,
) {
    let Some(m) = schema.messages.get(message) else {
        return;
    };
    for f in &m.field {
        if skip_intent_id && prefix.is_empty() && f.name() == "intent_id" {
            continue;
        }
        let name = format!("{prefix}{}", f.name());
        let nested = f.r#type() == Type::Message
            && !f.type_name().starts_with(".google.protobuf.")
            && !schema.is_map(f);
        if nested {
            query_parameters(schema, f.type_name(), &format!("{name}."), false, out);
        } else if !schema.is_map(f) {
            let mut p =
                json!({ "name": name, "in": "query", "schema": schema.field(f, COMPONENTS) });
            if f.label() == Label::Repeated {
                p["explode"] = true.into();
            }
            if let Some(doc) = schema.comment(message, f.name()) {
                p["description"] = doc.into();
            }
            out.push(p);
        }
    }
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": { "type": "string" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "code": { "type": "string", "description": "the google.rpc.Code name gRPC would answer" },
            "errors": { "type": "array", "items": {
                "type": "object", "required": ["field", "detail"],
                "properties": {
                    "field": { "type": "string", "description": "the field's path in the request message, e.g. steps[0].target.id" },
                    "detail": { "type": "string" },
                },
            } },
            "intentId": { "type": "string" },
            "decision": { "$ref": "#/components/schemas/parapet.v1.Decision" },
        },
    })
}
