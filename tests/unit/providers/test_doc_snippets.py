"""The registration snippets of docs/providers/*.md run as written.

Every ```python block without ``await`` is executed against a fresh registry,
with fake credentials in the environment (the clouds are not called: a
registration builds the provider and its URL, nothing more), and the URLs the
providers built are compared with the layout the pages document.
"""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from faust_inference import ModelRegistry

DOCS = Path(__file__).parents[3] / "docs" / "providers"
PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name != "index.md")

EXPECTED_URLS = {
    "fraud@kserve.md": "http://127.0.0.1:8080/v2/models/fraud/versions/v1/infer",
    "minilm": "http://127.0.0.1:7997/v1/embeddings",
    "summary": "https://api.openai.com/v1/chat/completions",
    "sentiment": "http://127.0.0.1:9000/score",
    "sentiment-pool": "http://127.0.0.1:9000/score",  # the first replica's
    "chat-pool": "http://127.0.0.1:8000/v1/chat/completions",
    "summarize": "https://contoso.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
    "embed@azure_openai.md": "https://contoso.openai.azure.com/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
    "claude": "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1:0/converse",
    "titan": "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2:0/invoke",
    "llama": "https://bedrock-runtime.us-east-1.amazonaws.com/model/meta.llama3-8b-instruct-v1:0/invoke",
    "churn@sagemaker.md": "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/churn-xgb-prod/invocations",
    "fraud@azureml.md": "https://fraud.westeurope.inference.ml.azure.com/score",
    "churn@vertex.md": "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4/endpoints/1234567890:predict",
    "embed@vertex.md": "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4/publishers/google/models/text-embedding-005:predict",
    "triage": "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4/publishers/google/models/gemini-2.0-flash:generateContent",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
    "gemini-embed": "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents",
}


@pytest.fixture
def cloud_env(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "acme-ml",
                "private_key_id": "1",
                "private_key": pem,
                "client_email": "docs@acme-ml.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(
        "[profile inference]\naws_access_key_id = AKIDDOCS\naws_secret_access_key = docs-secret\n"
    )
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": "AKIDDOCSENV",
        "AWS_SECRET_ACCESS_KEY": "docs-env-secret",
        "AWS_EC2_METADATA_DISABLED": "true",
        "OPENAI_API_KEY": "sk-docs-0000",
        "AZURE_OPENAI_API_KEY": "azure-docs-key",
        "AZUREML_ENDPOINT_KEY": "aml-docs-key",
        "GEMINI_API_KEY": "gemini-docs-key",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("page", PAGES)
async def test_registration_snippets_run(page, cloud_env):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    runnable = [b for b in blocks if "await " not in b]
    assert runnable, f"{page} has no registration snippet"
    registry = ModelRegistry()
    app = SimpleNamespace(model=registry.register, inference=registry)
    namespace = {"app": app}
    for block in runnable:
        exec(compile(block, f"{page}:snippet", "exec"), namespace)
    assert registry.models, f"{page} registers no model"
    for name, model in registry.models.items():
        expected = EXPECTED_URLS.get(f"{name}@{page}", EXPECTED_URLS.get(name))
        if expected is not None:
            assert model.runner.provider.url == expected, (page, name)
    await registry.aclose()


def test_every_provider_has_a_page_linked_from_the_index():
    index = (DOCS / "index.md").read_text()
    for page in PAGES:
        assert f"({page}" in index, page
