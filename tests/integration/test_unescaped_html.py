"""`herald serve` refuses, before it opens the database, a rule file whose HTML body would
send a client's value unescaped: the same check as `herald rules check`, with its words."""

from __future__ import annotations

from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import herald_environment, run_herald
from tests.support.rule_file_writing import payment_email_rule_file
from tests.support.rule_files import listed_problems


def test_serve_refuses_to_start_with_a_trait_marked_safe_in_body_html(tmp_path: Path) -> None:
    html = "<p>Hello {{ user.first_name | safe }}</p>"
    rules = payment_email_rule_file(
        tmp_path, {"subject.txt": "Order", "body.txt": "Hello", "body.html": html}
    )
    database = tmp_path / "herald.db"
    args = ["serve", "--rules", str(rules), "--database", f"sqlite:///{database}"]

    result = run_herald(
        [*args, "--port", str(free_port())],
        env=herald_environment(COLUMNS="1000"),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert f"error: {rules}: 1 problem(s)" in result.stderr
    assert listed_problems(result.stderr) == [
        "rule ORDER: template order/body.html line 1: `| safe` marks user.first_name as HTML,"
        " so markup or a link in it (in a name a user typed at signup, say) would go into the"
        " email as it is: drop `| safe` (body.html escapes each value it prints) or, to keep"
        ' its line breaks, escape it first, {{ user.first_name | e | replace("\\n", "<br>" |'
        " safe) }}"
    ]
    assert "Traceback" not in result.stderr
    assert not database.exists()  # refused before the database was touched
