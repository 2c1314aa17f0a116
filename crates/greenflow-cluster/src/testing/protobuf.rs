//! Rule 9's protobuf bodies: client-go sends core objects (helm's release Secrets) as
//! `application/vnd.kubernetes.protobuf`. The envelope is the magic `k8s\0` and a `runtime.Unknown` whose `raw` is the
//! object (`staging/src/k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`); the messages are those of
//! `staging/src/k8s.io/api/core/v1/generated.proto` and `apimachinery/pkg/apis/meta/v1/generated.proto`, with only
//! the fields this fake stores (prost skips the others).

use std::collections::BTreeMap;

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Value, json};

/// The content type of a protobuf body.
pub(super) const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// `runtime.Unknown`.
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

/// `runtime.TypeMeta`.
#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

/// `meta.v1.ObjectMeta`: name, namespace, resourceVersion, labels, annotations.
#[derive(Clone, PartialEq, prost::Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
}

/// `core.v1.Secret`.
#[derive(Clone, PartialEq, prost::Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
}

/// `core.v1.ConfigMap`.
#[derive(Clone, PartialEq, prost::Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut value = json!({"name": meta.name, "labels": meta.labels, "annotations": meta.annotations});
    if let Some(namespace) = meta.namespace {
        value["namespace"] = json!(namespace);
    }
    if let Some(version) = meta.resource_version.filter(|v| !v.is_empty()) {
        value["resourceVersion"] = json!(version);
    }
    value
}

/// The JSON form of a protobuf-encoded Secret or ConfigMap; `None` for anything else.
pub(super) fn decode(body: &[u8]) -> Option<Value> {
    let unknown = Unknown::decode(body.strip_prefix(b"k8s\0")?).ok()?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let (api_version, kind) = (type_meta.api_version.unwrap_or_default(), type_meta.kind.unwrap_or_default());
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            let secret = Secret::decode(raw.as_slice()).ok()?;
            let data: BTreeMap<String, String> = secret
                .data
                .into_iter()
                .map(|(key, value)| (key, base64::engine::general_purpose::STANDARD.encode(value)))
                .collect();
            Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(secret.metadata), "data": data,
                        "type": secret.r#type.unwrap_or_else(|| "Opaque".into())}))
        }
        ("v1", "ConfigMap") => {
            let map = ConfigMap::decode(raw.as_slice()).ok()?;
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(map.metadata), "data": map.data}))
        }
        _ => None,
    }
}
