//! Unit tests of the ext_proc codec: header reading, mutations, chunking, immediate
//! responses and metadata, each against the wire shape gie-facts §1.3–§1.4 gives.

use super::*;
use envoy_types::pb::envoy::config::core::v3::HeaderMap as EnvoyHeaderMap;

fn headers(pairs: &[(&str, &str, &[u8])]) -> HttpHeaders {
    HttpHeaders {
        headers: Some(EnvoyHeaderMap {
            headers: pairs
                .iter()
                .map(|(k, v, raw)| HeaderValue {
                    key: k.to_string(),
                    value: v.to_string(),
                    raw_value: raw.to_vec(),
                })
                .collect(),
        }),
        ..Default::default()
    }
}

#[test]
fn header_map_prefers_raw_value_and_ignores_case() {
    let h = headers(&[
        ("Content-Type", "", b"application/json"),
        ("x-a", "from-value", b""),
        ("x-b", "stale", b"fresh"),
        (":path", "", b"/v1/completions"),
        ("bad name", "", b"x"),
        ("x-bad-value", "", b"a\nb"),
    ]);
    let map = header_map(&h);
    assert_eq!(map["content-type"], "application/json");
    assert_eq!(map["X-A"], "from-value");
    assert_eq!(map["x-b"], "fresh");
    assert_eq!(map.len(), 3, "{map:?}");
    assert_eq!(pseudo_header(&h, ":PATH"), Some(&b"/v1/completions"[..]));
    assert_eq!(pseudo_header(&h, ":method"), None);
    assert!(header_map(&HttpHeaders::default()).is_empty());
}

#[test]
fn mutation_sets_raw_bytes_with_overwrite_and_removes() {
    let common = Mutation::default()
        .set("X-Gateway-Model-Name", "llama")
        .remove("x-drop")
        .clear_route_cache()
        .into_common();
    assert!(common.clear_route_cache);
    let m = common.header_mutation.expect("mutation");
    assert_eq!(m.remove_headers, vec!["x-drop".to_string()]);
    let set = &m.set_headers[0];
    let h = set.header.as_ref().unwrap();
    assert_eq!(h.key, "X-Gateway-Model-Name");
    assert_eq!(h.raw_value, b"llama");
    assert!(
        h.value.is_empty(),
        "Envoy rejects both value and raw_value set"
    );
    assert_eq!(
        set.append_action,
        HeaderAppendAction::OverwriteIfExistsOrAdd as i32
    );
    assert_eq!(Mutation::default().into_common().header_mutation, None);
}

#[test]
fn headers_and_trailers_replies_match_their_direction() {
    use processing_response::Response as R;
    let req = headers_response(Direction::Request, Mutation::default().clear_route_cache());
    let Some(R::RequestHeaders(h)) = req.response else {
        panic!("{req:?}");
    };
    assert!(h.response.unwrap().clear_route_cache);
    assert!(matches!(
        pass_headers(Direction::Response).response,
        Some(R::ResponseHeaders(_))
    ));
    assert!(matches!(
        pass_trailers(Direction::Request).response,
        Some(R::RequestTrailers(_))
    ));
    assert!(matches!(
        pass_trailers(Direction::Response).response,
        Some(R::ResponseTrailers(_))
    ));
}

#[test]
fn body_chunks_split_at_the_byte_limit_with_eos_on_the_last() {
    let check = |len: usize, eos: bool, want: &[usize]| {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let chunks = body_chunks(&body, eos);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.body.len()).collect();
        assert_eq!(sizes, want, "len {len}");
        let flags: Vec<bool> = chunks.iter().map(|c| c.end_of_stream).collect();
        let mut want_flags = vec![false; want.len()];
        *want_flags.last_mut().unwrap() = eos;
        assert_eq!(flags, want_flags, "len {len}");
        let joined: Vec<u8> = chunks.into_iter().flat_map(|c| c.body).collect();
        assert_eq!(joined, body);
    };
    check(0, true, &[0]);
    check(0, false, &[0]);
    check(1, true, &[1]);
    check(BODY_BYTE_LIMIT, true, &[BODY_BYTE_LIMIT]);
    check(BODY_BYTE_LIMIT + 1, true, &[BODY_BYTE_LIMIT, 1]);
    check(200_000, true, &[62_000, 62_000, 62_000, 14_000]);
    check(200_000, false, &[62_000, 62_000, 62_000, 14_000]);
}

#[test]
fn body_responses_are_streamed_mutations() {
    use processing_response::Response as R;
    let replies = body_responses(Direction::Response, b"abc", true);
    assert_eq!(replies.len(), 1);
    let Some(R::ResponseBody(b)) = &replies[0].response else {
        panic!("{replies:?}");
    };
    let mutation = b.response.as_ref().unwrap().body_mutation.as_ref().unwrap();
    let Some(body_mutation::Mutation::StreamedResponse(s)) = &mutation.mutation else {
        panic!("{mutation:?}");
    };
    assert_eq!((s.body.as_slice(), s.end_of_stream), (&b"abc"[..], true));
}

#[test]
fn immediate_response_carries_status_body_and_headers() {
    let r = immediate_response(413, "too big", &[("content-type", "text/plain")]);
    let Some(processing_response::Response::ImmediateResponse(i)) = r.response else {
        panic!("{r:?}");
    };
    assert_eq!(i.status.unwrap().code, 413);
    assert_eq!(i.body, b"too big");
    let h = &i.headers.unwrap().set_headers[0];
    assert_eq!(h.header.as_ref().unwrap().key, "content-type");
    assert_eq!(h.header.as_ref().unwrap().raw_value, b"text/plain");
    let bare = immediate_response(500, "", &[]);
    let Some(processing_response::Response::ImmediateResponse(i)) = bare.response else {
        panic!();
    };
    assert_eq!(i.headers, None);
}

#[test]
fn destination_metadata_joins_endpoints_under_envoy_lb() {
    let md = destination_metadata(&["10.0.0.1:8000", "10.0.0.2:8000"]);
    let Some(Kind::StructValue(inner)) = &md.fields[LB_NAMESPACE].kind else {
        panic!("{md:?}");
    };
    assert_eq!(
        inner.fields[DESTINATION_ENDPOINT].kind,
        Some(Kind::StringValue("10.0.0.1:8000,10.0.0.2:8000".into()))
    );
}

#[test]
fn metadata_strings_reads_lists_and_comma_strings() {
    let list = |items: Vec<Kind>| {
        Kind::ListValue(ListValue {
            values: items.into_iter().map(|k| Value { kind: Some(k) }).collect(),
        })
    };
    let s = |v: &str| Kind::StringValue(v.into());
    let check = |kind: Kind, want: &[&str]| {
        let md = request_metadata(SUBSET_HINT_NAMESPACE, DESTINATION_SUBSET, kind);
        let got = metadata_strings(Some(&md), SUBSET_HINT_NAMESPACE, DESTINATION_SUBSET);
        assert_eq!(
            got.as_deref(),
            Some(&want.iter().map(|w| w.to_string()).collect::<Vec<_>>()[..])
        );
    };
    check(
        list(vec![s("1.1.1.1:80"), s("2.2.2.2:80")]),
        &["1.1.1.1:80", "2.2.2.2:80"],
    );
    check(
        list(vec![s("1.1.1.1:80"), Kind::NumberValue(3.0), s("")]),
        &["1.1.1.1:80"],
    );
    check(list(vec![]), &[]);
    check(s("1.1.1.1:80, 2.2.2.2:80,"), &["1.1.1.1:80", "2.2.2.2:80"]);
    check(s(""), &[]);
    check(Kind::BoolValue(true), &[]);

    let md = request_metadata(SUBSET_HINT_NAMESPACE, DESTINATION_SUBSET, s("a"));
    assert_eq!(
        metadata_strings(None, SUBSET_HINT_NAMESPACE, DESTINATION_SUBSET),
        None
    );
    assert_eq!(
        metadata_strings(Some(&md), LB_NAMESPACE, DESTINATION_SUBSET),
        None
    );
    assert_eq!(
        metadata_strings(Some(&md), SUBSET_HINT_NAMESPACE, "other"),
        None
    );
}

#[test]
fn metadata_string_value_reads_the_served_endpoint() {
    let md = request_metadata(
        LB_NAMESPACE,
        DESTINATION_SERVED,
        Kind::StringValue("10.0.0.3:8000".into()),
    );
    assert_eq!(
        metadata_string_value(Some(&md), LB_NAMESPACE, DESTINATION_SERVED).as_deref(),
        Some("10.0.0.3:8000")
    );
    assert_eq!(metadata_string_value(Some(&md), LB_NAMESPACE, "x"), None);
}
