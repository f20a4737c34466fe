"""Eval's judges follow data_gen's rule (fitrain.core.server_failures): judge requests that fail at the
server beyond ``judge.max_failed_share`` fail the call (exit 2, naming the server and the share), below it
they are counted rejects; the judge cache keeps what was answered, so the rerun does not pay twice."""
import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.config import from_dict
from fitrain.core.errors import ConfigError
from fitrain.core.llm import Request
from fitrain.core.server_failures import InfrastructureFailure
from fitrain_eval.judges.common import JudgeConfig, parse_number
from tests.helpers.eval_clients import judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message


def requests(n):
    return [Request(messages=[{"role": "user", "content": f"rate item {i}"}], meta={"id": str(i)}) for i in range(n)]


def test_a_judge_server_failing_every_request_is_an_infrastructure_failure(tmp_path):
    with ScriptedLLMServer(lambda k, b: Reply(status=500)) as srv:
        judge = judge_for(srv, tmp_path)
        rejects = Rejects()
        with pytest.raises(InfrastructureFailure) as e:
            judge.judge(requests(5), lambda t: parse_number(t, 1, 10), rejects, "v1", what="mixeval_judge")
    assert srv.base_url in str(e.value) and "5 of 5 requests (100%)" in str(e.value)
    assert rejects.counts["mixeval_judge_failed"] == 5


def test_a_few_failed_judge_requests_stay_counted_and_the_rest_is_cached(tmp_path):
    def respond(kind, body):
        return Reply(status=503) if last_user_message(body) == "rate item 0" else Reply(text="[[7]]")

    with ScriptedLLMServer(respond) as srv:
        judge = judge_for(srv, tmp_path, max_failed_share=0.25)
        rejects = Rejects()
        out = judge.judge(requests(8), lambda t: parse_number(t, 1, 10), rejects, "v1")
        assert [j.value for j in out] == [None] + [7.0] * 7 and rejects.counts["judge_failed"] == 1
        n = len(srv.requests)
        judge.judge(requests(8)[1:], lambda t: parse_number(t, 1, 10), Rejects(), "v1")
        assert len(srv.requests) == n  # answered judgments come from the cache


@pytest.mark.parametrize("share", [-1, 2, float("inf")])
def test_judge_max_failed_share_outside_0_1_is_refused(share):
    with pytest.raises(ConfigError, match="max_failed_share"):
        from_dict(JudgeConfig, {"max_failed_share": share})
