"""The web page and the token check, without a server (the browser test has one)."""

from pydantic import SecretStr

from faust_inference.lifecycle import Change, RoutingState
from faust_inference.lifecycle.report import model_report
from faust_inference.lifecycle.stats import Figures
from faust_inference.web import refusal, render_page

TOKEN = SecretStr("a-token-of-some-length")


def test_changes_need_a_configured_token_and_the_right_bearer():
    assert refusal(None, "Bearer anything")[0] == 403
    assert refusal(TOKEN, "")[0] == 401
    assert refusal(TOKEN, "Bearer a-token-of-some-lengtX")[0] == 401
    assert refusal(TOKEN, "Bearer a-token-of-some-length") is None
    assert "a-token" not in repr(TOKEN)


def test_the_page_escapes_what_it_shows_and_says_when_it_is_read_only():
    state = RoutingState.initial("fraud", "v1", versions=("v1", "v2")).apply(
        Change.split({"v1": 90, "v2": 10}, reason="<script>alert(1)</script>", source="cli")
    )
    f = Figures()
    f.record(0.02, error=False)
    published = [{"at": 1e12, "total": {"v2": f.as_dict()}, "rate": {"v2": 3.0}}]
    report = model_report("fraud", ("v1", "v2"), state, published, now=1e12)
    page = render_page([report], changes_allowed=False)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "Read only" in page and "90%" in page and "10%" in page
    assert report["versions"]["v2"]["requests"] == 1 and report["workers"] == 1


async def test_lifecycle_metrics_reach_the_prometheus_registry():
    import faust
    from prometheus_client import generate_latest

    from faust_inference import install
    from faust_inference.lifecycle import lifecycle
    from faust_inference.lifecycle.metrics import attach
    from faust_inference.lifecycle.shadow import Agreement
    from faust_inference.sensors import prometheus

    app = faust.App("unit-lifecycle-metrics", broker="kafka://127.0.0.1:1", store="memory://")
    install(app)
    prometheus.setup(app)
    model = app.model("fraud", provider="http", endpoint="http://127.0.0.1:9", version="v1")
    model.add_version("v2")
    plane = lifecycle(app)
    plane.shadow.sent[("fraud", "v2")] = 5
    a = plane.shadow.agreement[("fraud", "v1", "v2")] = Agreement("classification")
    a.compare([0.9, 0.1], [0.2, 0.8])
    assert attach(plane) and attach(plane)
    observer = next(o for o in app.inference.hooks.observers if hasattr(o, "registry"))
    text = generate_latest(observer.registry).decode()
    assert 'faust_inference_traffic_share{model="fraud",version="v1"} 1.0' in text
    assert (
        'faust_inference_shadow_copies_total{model="fraud",outcome="sent",version="v2"} 5.0' in text
    )
    assert (
        'faust_inference_shadow_agreement{measure="agreement",model="fraud",primary="v1",'
        'shadow="v2"} 0.0'
    ) in text
    assert 'primary_class="0",shadow="v2",shadow_class="1"} 1.0' in text
    await app.inference.aclose()
