"""What certsmith says at start about the pod-certificate APIs a cluster does not serve."""

from __future__ import annotations

from certsmith.podcerts.apis import PodCertificateApis


def test_a_cluster_serving_both_apis_gets_no_warning() -> None:
    assert PodCertificateApis(requests="v1", bundles="v1").unserved() == []
    assert PodCertificateApis(requests="v1beta1", bundles="v1beta1").unserved() == []


def test_each_missing_api_is_named_with_what_is_lost_and_the_gates_that_serve_it() -> None:
    sentences = PodCertificateApis(requests=None, bundles=None).unserved()
    assert len(sentences) == 2
    requests, bundles = sentences
    assert requests.startswith("podcertificaterequests.certificates.k8s.io is not served")
    assert "signs no pod certificates" in requests
    assert bundles.startswith("clustertrustbundles.certificates.k8s.io is not served")
    assert "publishes no ClusterTrustBundles" in bundles
    for sentence in sentences:
        assert (
            "PodCertificateRequest, ClusterTrustBundle and ClusterTrustBundleProjection" in sentence
        )
        assert "certificates.k8s.io/v1beta1/podcertificaterequests=true" in sentence


def test_only_the_missing_api_is_named() -> None:
    (sentence,) = PodCertificateApis(requests="v1beta1", bundles=None).unserved()
    assert sentence.startswith("clustertrustbundles")
