from faust_inference import ModelRegistry
from faust_inference.cli import describe


def test_describe_lists_models_without_credentials():
    registry = ModelRegistry()
    registry.register("fraud", provider="kserve", endpoint="http://127.0.0.1:8080", version="v1",
                      batch_size=16, api_key="sk-secret-value-123")
    registry.register("chat", provider="openai", task="text_generation", api_key="sk-other-456")
    lines = describe(registry.models.values()).splitlines()
    assert lines[0].split()[:3] == ["name", "provider", "endpoint"]
    assert lines[1].split()[:5] == ["fraud", "kserve", "http://127.0.0.1:8080", "fraud", "v1"]
    assert lines[2].split()[:3] == ["chat", "openai", "(default)"]
    assert "sk-" not in "\n".join(lines)
