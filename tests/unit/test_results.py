import faust
import orjson

from faust_inference import DeadLetter, InvalidInput, RetriesExhausted, ServerError


class Tx(faust.Record):
    id: str
    amount: float


def test_dead_letter_of_exhausted_retries_names_the_cause():
    last = ServerError("http://127.0.0.1:1/v2/models/m/infer answered 503: busy", status=503)
    error = RetriesExhausted(last, attempts=4)
    letter = DeadLetter.from_error(
        error,
        event=Tx(id="t1", amount=9.5),
        model="fraud",
        version="v1",
        key=b"card-1",
        topic="transactions",
        partition=2,
        offset=41,
    )
    payload = letter.as_dict()
    assert payload["event"] == {"id": "t1", "amount": 9.5}
    assert payload["key"] == "card-1"
    assert (payload["error_class"], payload["cause_class"], payload["attempts"]) == (
        "RetriesExhausted",
        "ServerError",
        4,
    )
    assert "gave up after 4 attempts: ServerError" in payload["error"]
    assert (payload["topic"], payload["partition"], payload["offset"]) == ("transactions", 2, 41)
    assert orjson.loads(orjson.dumps(payload)) == payload  # plain JSON all the way


def test_dead_letter_of_bad_input_made_no_call():
    letter = DeadLetter.from_error(
        InvalidInput("features", "expected 10 values, got 7"),
        event={"id": "x"},
        model="fraud",
        version=None,
    )
    assert letter.attempts == 0 and letter.cause_class is None
    assert letter.error == "features: expected 10 values, got 7"
