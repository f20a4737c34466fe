from fitrain_eval.judges import mtbench101 as mt


def _dialogue(task):
    return mt.Dialogue(task=task, id=1, history=[{"user": "u0", "bot": "GOLD-0"}, {"user": "u1", "bot": "GOLD-1"}])


def test_gold_reference_shown_only_for_reasoning_tasks():
    for task in mt.TASKS:
        text = mt.judge_request(_dialogue(task), 1, "ANSWER").messages[0]["content"]
        assert "ANSWER" in text and "GOLD-0" in text  # the gold history is always context
        assert ("GOLD-1" in text) == (task in mt.REFERENCE_TASKS), task
        assert text.count("ANSWER") == 1
