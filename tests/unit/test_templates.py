"""Templates render subject, text and HTML in one pass and still escape only the HTML."""

from __future__ import annotations

import tracemalloc

import pytest
from markupsafe import escape

from herald.rules.rendering.template_set import Rendered, TemplateProblem, TemplateSet

SOURCES = {
    "note": {
        "subject.txt": "Hello {{ user.name }}\n",
        "body.txt": "Dear {{ user.name }},\nyour code is {{ event.code }}.\n",
        "body.html": "<p>Dear {{ user.name }}</p>\n",
    }
}


def test_one_pass_rendering_escapes_html_but_not_text() -> None:
    rendered = TemplateSet(SOURCES).render(
        "note", {"user": {"name": "<b>Al</b>"}, "event": {"code": 7}}
    )
    assert rendered.subject == "Hello <b>Al</b>"
    assert rendered.body == "Dear <b>Al</b>,\nyour code is 7."
    assert rendered.html == "<p>Dear &lt;b&gt;Al&lt;/b&gt;</p>"


def test_a_value_containing_the_internal_separator_still_renders_each_part() -> None:
    context = {"user": {"name": "A\x1eB"}, "event": {"code": 1}}
    rendered = TemplateSet(SOURCES).render("note", context)
    assert rendered.subject == "Hello A\x1eB"
    assert rendered.body.startswith("Dear A\x1eB,")
    assert rendered.html == "<p>Dear A\x1eB</p>"


def test_a_separator_in_a_value_of_a_template_without_html_stays_in_its_part() -> None:
    # One separator in the data makes three pieces, the count a template with HTML gives.
    sources = {"plain": {"subject.txt": "Hello {{ user.name }}", "body.txt": "Dear customer."}}
    rendered = TemplateSet(sources).render("plain", {"user": {"name": "A\x1eB"}, "event": {}})
    assert rendered == Rendered("Hello A\x1eB", "Dear customer.", None)


@pytest.mark.parametrize(
    ("parts", "body"),
    [
        # The last part, ending in a blank line: Jinja drops the final newline, not the blank.
        ({"body.txt": "Your code is {{ event.code }}.\n\n"}, "Your code is 7.\n"),
        (
            {"body.txt": "Your code is {{ event.code }}.\n\n", "body.html": "<p>Code</p>\n"},
            "Your code is 7.\n",
        ),
        # Saved with Windows line ends, before the HTML: \r\n is one newline to Jinja.
        (
            {"body.txt": "Your code is {{ event.code }}.\r\n", "body.html": "<p>Code</p>\r\n"},
            "Your code is 7.",
        ),
    ],
)
def test_a_separator_in_a_value_leaves_the_body_s_final_newlines_as_they_were(
    parts: dict[str, str], body: str
) -> None:
    # The separator in the name sends the render part by part: the text must not change.
    templates = TemplateSet({"note": {"subject.txt": "Hello {{ user.name }}", **parts}})

    in_one_pass = templates.render("note", {"user": {"name": "Al"}, "event": {"code": 7}})
    part_by_part = templates.render("note", {"user": {"name": "A\x1eB"}, "event": {"code": 7}})

    assert (in_one_pass.subject, part_by_part.subject) == ("Hello Al", "Hello A\x1eB")
    assert in_one_pass.body == part_by_part.body == body
    assert in_one_pass.html == part_by_part.html


def test_a_missing_optional_value_renders_empty_at_send_time() -> None:
    rendered = TemplateSet(SOURCES).render("note", {"user": {}, "event": {}})
    assert rendered.subject == "Hello"


@pytest.mark.parametrize(
    ("body", "tried"),
    [
        ("{{ event.properties.fee + 1 }}", "an addition (+)"),
        ("{{ 10 - event.properties.fee }}", "a subtraction (-)"),
        ("{% if event.properties.fee > 5 %}high{% endif %}", "a comparison (<, <=, > or >=)"),
        ('{{ "%.2f" | format(event.properties.fee) }}', "a conversion to a number"),
        ("{{ event.properties.fee | round }}", "the `round` filter"),
    ],
)
def test_an_absent_value_where_a_number_is_needed_says_it_is_absent_and_what_was_tried(
    body: str, tried: str
) -> None:
    templates = TemplateSet({"fee": {"subject.txt": "Fee", "body.txt": body}})

    with pytest.raises(TemplateProblem) as caught:
        templates.render("fee", {"user": {}, "event": {"properties": {}}})

    assert str(caught.value).startswith(
        f"template fee: event.properties.fee is absent, and the template uses it in {tried}: "
    )


def test_the_first_item_of_an_empty_list_used_in_arithmetic_says_the_list_was_empty() -> None:
    # It said "the item None is absent": there is no item called None.
    body = "{{ (event.properties.lines | first) + 1 }}"
    templates = TemplateSet({"order": {"subject.txt": "Order", "body.txt": body}})

    with pytest.raises(TemplateProblem) as caught:
        templates.render("order", {"user": {}, "event": {"properties": {"lines": []}}})

    assert str(caught.value).startswith(
        "template order: the value a filter gave (No first item, sequence was empty) is "
        "absent, and the template uses it in an addition (+): "
    )


def test_an_absent_trait_used_in_arithmetic_is_named_as_a_trait() -> None:
    templates = TemplateSet({"t": {"subject.txt": "x", "body.txt": "{{ user.balance * 2 }}"}})

    with pytest.raises(TemplateProblem, match=r"^template t: user\.balance is absent, "):
        templates.render("t", {"user": {"email": "a@example.com"}, "event": {"properties": {}}})


MISTYPED = [(None, "null"), ({"given": "Ada"}, "an object"), (["Ada"], "a list"), (1, "a number")]


@pytest.mark.parametrize(("name", "said"), MISTYPED)
def test_a_trait_not_of_its_declared_type_is_false_in_a_test_as_an_absent_one(
    name: object, said: str
) -> None:
    sources = {"hi": {"subject.txt": "Hi {{ user.name or 'there' }}", "body.txt": "x"}}
    templates = TemplateSet(sources, traits={"name": "string"})

    rendered = templates.render("hi", {"user": {"name": name, "plan": "pro"}, "event": {}})

    assert rendered.subject == "Hi there"


@pytest.mark.parametrize(("name", "said"), MISTYPED)
@pytest.mark.parametrize("part", ["subject.txt", "body.html"])
def test_a_trait_not_of_its_declared_type_is_never_printed_as_python(
    name: object, said: str, part: str
) -> None:
    sources = {"hi": {"subject.txt": "Hi", "body.txt": "x", part: "Dear {{ user.name }}"}}
    templates = TemplateSet(sources, traits={"name": "string"})

    with pytest.raises(TemplateProblem) as refused:
        templates.render("hi", {"user": {"name": name}, "event": {}})

    assert f"user.name is {said}, not the string the rule file declares" in str(refused.value)


def test_a_trait_of_its_declared_type_renders() -> None:
    sources = {"hi": {"subject.txt": "{{ user.name }}, {{ user.seats }}", "body.txt": "x"}}
    templates = TemplateSet(sources, traits={"name": "string", "seats": "integer"})

    rendered = templates.render("hi", {"user": {"name": "Ada", "seats": 3}, "event": {}})

    assert rendered.subject == "Ada, 3"


def test_an_integer_trait_written_with_a_zero_fraction_renders_as_that_integer() -> None:
    # JSON does not tell 3 from 3.0, and a client whose numbers are all doubles sends 3.0:
    # the render failed, saying "user.seats is a number, not the integer" it is.
    sources = {"hi": {"subject.txt": "{{ user.seats }} seats", "body.txt": "{{ user.seats + 1 }}"}}
    templates = TemplateSet(sources, traits={"seats": "integer"})

    rendered = templates.render("hi", {"user": {"seats": 3.0}, "event": {}})

    assert (rendered.subject, rendered.body) == ("3 seats", "4")


def test_a_trait_named_like_a_dict_method_renders_the_trait() -> None:
    sources = {"t": {"subject.txt": "{{ user.items }} / {{ user.get('plan') }}", "body.txt": "x"}}
    rendered = TemplateSet(sources).render("t", {"user": {"items": 3, "plan": "pro"}, "event": {}})
    assert rendered.subject == "3 / pro"


def test_an_absent_trait_named_like_a_dict_method_is_absent_not_the_method() -> None:
    sources = {
        "t": {
            "subject.txt": "Items: {{ user.items or 'none' }}",
            "body.txt": "{{ event.properties.values }}|{% for k in user.keys %}{{ k }}{% endfor %}",
        }
    }
    rendered = TemplateSet(sources).render("t", {"user": {}, "event": {"properties": {}}})
    assert (rendered.subject, rendered.body) == ("Items: none", "|")


def test_a_method_of_an_object_value_can_still_be_called() -> None:
    sources = {
        "t": {
            "subject.txt": "{% for k, v in event.meta.items() %}{{ k }}={{ v }}{% endfor %}",
            "body.txt": "{{ user.get('plan', 'free') }}",
        }
    }
    context = {"user": {}, "event": {"meta": {"a": 1}}}
    rendered = TemplateSet(sources).render("t", context)
    TemplateSet(sources).check("t", context)
    assert (rendered.subject, rendered.body) == ("a=1", "free")


def test_the_load_time_check_refuses_an_unknown_name_named_like_a_dict_method() -> None:
    sources = {"t": {"subject.txt": "{{ user.items }}", "body.txt": "x"}}
    with pytest.raises(TemplateProblem, match="has no attribute 'items'"):
        TemplateSet(sources).check("t", {"user": {"email": "a@b.c"}, "event": {}})


def test_the_sandbox_still_refuses_python_internals() -> None:
    sources = {"t": {"subject.txt": "{{ user.__class__.__mro__ }}", "body.txt": "x"}}
    rendered = TemplateSet(sources).render("t", {"user": {"name": "a"}, "event": {}})
    assert "object" not in rendered.subject


def test_absent_traits_fall_back_and_chain_to_empty() -> None:
    sources = {
        "t": {
            "subject.txt": "Hi {{ user.first_name or 'there' }}{{ user.address.city }}",
            "body.txt": "x",
        }
    }
    rendered = TemplateSet(sources).render("t", {"user": {"email": "a@b.c"}, "event": {}})
    assert rendered.subject == "Hi there"


def test_jinja_globals_stay_available_to_templates() -> None:
    sources = {"t": {"subject.txt": "{{ range(3) | join(',') }}", "body.txt": "x"}}
    assert TemplateSet(sources).render("t", {"user": {}, "event": {}}).subject == "0,1,2"


def test_the_load_time_check_still_refuses_an_unknown_name() -> None:
    sources = {"t": {"subject.txt": "{{ user.nickname.upper() }}", "body.txt": "x"}}
    with pytest.raises(TemplateProblem, match="nickname"):
        TemplateSet(sources).check("t", {"user": {"email": "a@b.c"}, "event": {}})


STARS = {"stars": {"subject.txt": "Rated", "body.txt": "{{ '*' * event.n }} {{ 2 ** event.n }}"}}


def test_a_template_repeating_or_raising_to_a_small_client_value_renders() -> None:
    rendered = TemplateSet(STARS).render("stars", {"event": {"n": 3}, "user": {}})

    assert rendered.body == "*** 8"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("{{ '*' * event.n }}", "1,000,000,000,000 repetitions of 1 items would be more than"),
        ("{{ event.n * [0] }}", "1,000,000,000,000 repetitions of 1 items would be more than"),
        ("{{ 2 ** event.n }}", "2 ** 1000000000000 is more than 10,000 bits"),
        ("{{ 'a'.ljust(event.n) }}", "ljust(1,000,000,000,000) would make a text more than"),
        ("{{ 'a'.zfill(width=event.n) }}", "zfill(1,000,000,000,000) would make a text more than"),
        ("{{ 'a' | center(event.n) }}", "center(1,000,000,000,000) would make a text more than"),
        ("{{ 'a' | indent(event.n) }}", "indent(1,000,000,000,000) would make a text more than"),
        (
            "{{ ('x\\n' * 50000) | indent(3) }}",
            "indent(3) on 50,001 lines would make a text more than 100,000 long",
        ),
        (
            "{{ '{:>{}}'.format('a', event.n) }}",
            "format with a width or precision of 1,000,000,000,000",
        ),
        (
            "{{ '{n:.{n}f}'.format_map(event) }}",
            "format with a width or precision of 1,000,000,000,000",
        ),
        ("{{ '%*s' % (event.n, 'a') }}", "% with a width or precision of 1,000,000,000,000"),
        ("{{ '%.*f' | format(event.n, 1.5) }}", "% with a width or precision of 1,000,000,000,000"),
        ("{{ [1] | batch(event.n, 0) | list }}", "batch(1,000,000,000,000) would make more than"),
        ("{{ [1] | slice(event.n) | list }}", "slice(1,000,000,000,000) would make more than"),
        ("{{ lipsum(event.n) }}", "lipsum(1,000,000,000,000) of up to 100 words would make"),
    ],
)
def test_a_client_value_cannot_make_a_template_build_gigabytes(body: str, said: str) -> None:
    # Unbounded, n = 10**12 from one event held the process for as long as it had memory.
    sources = {"big": {"subject.txt": "Rated", "body.txt": body}}

    with pytest.raises(TemplateProblem) as refused:
        TemplateSet(sources).render("big", {"event": {"n": 10**12}, "user": {}})

    assert f"template big: SecurityError: {said}" in str(refused.value)


@pytest.mark.parametrize("html", [False, True])
def test_a_loop_in_a_loop_over_a_clients_list_cannot_make_a_message_of_gigabytes(
    html: bool,
) -> None:
    # Unbounded, 3,000 items of ten letters made a body of 180 million characters, and
    # the 100,000 items a 1 MiB event holds would take the process's memory. Here 300
    # items of 100 letters, within the loops' bound, make 9 million.
    loop = "{% for a in event.items %}{% for b in event.items %}{{ a }}{% endfor %}{% endfor %}"
    sources = {"loops": {"subject.txt": "Hi", "body.txt": "ok"}}
    sources["loops"]["body.html" if html else "body.txt"] = loop
    items = ["x" * 100] * 300

    with pytest.raises(TemplateProblem) as refused:
        TemplateSet(sources).render("loops", {"event": {"items": items}, "user": {}})

    said = "SecurityError: the message would be more than 1,000,000 characters"
    assert f"template loops: {said}" in str(refused.value)


@pytest.mark.parametrize(
    "loops",
    [
        "{% for a in event.xs %}{% for b in event.xs if b < 0 %}{{ b }}{% endfor %}{% endfor %}",
        "{% macro m() %}{% for a in event.xs %}{% for b in event.xs %}.{% endfor %}"
        "{% endfor %}{% endmacro %}{{ m() | length }}",
        "{% for a in event.xs %}{% set n = namespace(i=0) %}{% for b in event.xs %}"
        "{% set n.i = n.i + 1 %}{% endfor %}{% endfor %}",
        "{% for a in event.xs %}{% autoescape false %}{% for b in event.xs %}{% endfor %}"
        "{% endautoescape %}{% endfor %}",
    ],
    ids=["printing nothing", "in a macro", "counting", "in autoescape"],
)
def test_loops_over_a_clients_list_cannot_hold_the_server_for_its_size_squared(
    loops: str,
) -> None:
    # Unbounded, 100,000 numbers (well within an event's 1 MiB) took hours, printing
    # nothing, on the thread that answers requests.
    sources = {"loops": {"subject.txt": "Hi", "body.txt": loops}}
    context = {"event": {"xs": list(range(100_000))}, "user": {}}

    with pytest.raises(TemplateProblem) as refused:
        TemplateSet(sources).render("loops", context)

    said = "SecurityError: the loops would take more than 100,000 items"
    assert f"template loops: {said}" in str(refused.value)


def test_loops_over_items_counted_together_within_the_bound_render() -> None:
    body = (
        "{% for a in event.xs %}{{ a }}{% if not loop.last %},{% endif %}{% endfor %};"
        "{% for k, v in event.d.items() %}{{ k }}={{ v }}{% else %}none{% endfor %};"
        "{% for n in event.tree recursive %}{{ n.name }}[{{ loop(n.kids) }}]{% endfor %};"
        "{{ event.xs | length }}"
    )
    sources = {"loops": {"subject.txt": "Hi", "body.txt": body}}
    tree = [{"name": "a", "kids": [{"name": "b", "kids": []}]}]
    context = {"event": {"xs": list(range(99_990)), "d": {}, "tree": tree}, "user": {}}

    rendered = TemplateSet(sources).render("loops", context)

    assert rendered.body.startswith("0,1,2,") and rendered.body.endswith("99989;none;a[b[]];99990")


def test_a_message_of_a_million_characters_renders_whole() -> None:
    sources = {"long": {"subject.txt": "Hi", "body.txt": "{{ event.text }}"}}
    text = "x" * (1_000_000 - len("Hi\x1e"))

    rendered = TemplateSet(sources).render("long", {"event": {"text": text}, "user": {}})

    assert rendered.body == text


def test_a_separator_in_a_value_still_bounds_each_part() -> None:
    sources = {"loops": {"subject.txt": "{{ event.sep }}", "body.txt": "{{ event.big }}"}}
    context = {"event": {"sep": "\x1e", "big": "x" * 1_000_001}, "user": {}}

    with pytest.raises(TemplateProblem, match="more than 1,000,000 characters"):
        TemplateSet(sources).render("loops", context)


def test_a_template_padding_to_a_small_client_value_renders() -> None:
    body = (
        "{{ 'ab'.rjust(event.n, '.') }}|{{ 'x' | center(event.n) }}|{{ 'a\\nb' | indent(event.n) }}"
    )
    sources = {"pad": {"subject.txt": "Padded", "body.txt": body}}

    rendered = TemplateSet(sources).render("pad", {"event": {"n": 4}, "user": {}})

    assert rendered.body == "..ab| x  |a\n    b"


def test_a_template_of_a_few_placeholder_paragraphs_renders() -> None:
    sources = {"lorem": {"subject.txt": "Lorem", "body.txt": "{{ lipsum(event.n, false) }}"}}

    rendered = TemplateSet(sources).render("lorem", {"event": {"n": 2}, "user": {}})

    assert rendered.body.count("\n\n") == 1  # two paragraphs


def test_a_template_formatting_to_a_small_client_width_renders() -> None:
    body = (
        "{{ '{:>{}}'.format('ab', event.n) }}|{{ '%*s' % (event.n, 'x') }}|"
        "{{ '%-4s%%' | format('y') }}|{{ '{0:.2f}'.format(1.5) }}|{{ 7 % event.n }}|"
        "{{ [1, 2, 3] | batch(event.n - 2, 0) | list }}|{{ [1, 2] | slice(event.n) | list }}"
    )
    sources = {"fmt": {"subject.txt": "Formatted", "body.txt": body}}

    rendered = TemplateSet(sources).render("fmt", {"event": {"n": 4}, "user": {}})

    assert rendered.body == "  ab|   x|y   %|1.50|3|[[1,2],[3,0]]|[[1],[2],[],[]]"


def test_a_clients_values_print_in_json_spelling_and_null_prints_nothing() -> None:
    # Python's spelling reached customers: "Auto-pay: True", "Plan: None", "['a', 'b']".
    body = "{% set p = event.properties %}{{ p.on }}/{{ p.off }}/{{ p.plan }}/{{ p.tags }}/"
    body += "{{ p.meta }}/{{ p.amount }}"
    sources = {"t": {"subject.txt": "s", "body.txt": body, "body.html": body}}
    properties = {
        "on": True,
        "off": False,
        "plan": None,
        "tags": ["a", "b"],
        "meta": {"tier": 2},
        "amount": 1425.5,
    }

    rendered = TemplateSet(sources).render("t", {"event": {"properties": properties}, "user": {}})

    assert rendered.body == 'true/false//["a","b"]/{"tier":2}/1425.5'
    assert rendered.html == "true/false//[&#34;a&#34;,&#34;b&#34;]/{&#34;tier&#34;:2}/1425.5"


def test_what_a_filter_makes_of_a_clients_list_prints_in_json_spelling() -> None:
    # A `map` left without `| join` sent "Items: <generator object sync_do_map at 0x7f...>".
    body = "{% set p = event.properties %}{{ p.items | map(attribute='name') }}|"
    body += "{{ p.tags | unique }}|{{ p.tags | reverse }}|{{ p.tags | select }}|"
    body += "{{ p.tags | batch(2) }}|{{ p.meta.keys() }}|{{ p.meta.items() }}|"
    body += "{{ p.meta | dictsort | first }}|{{ 'Tags: ' ~ (p.tags | unique) }}|"
    body += "{{ '{}'.format(p.tags | unique) }}|{{ '%s' | format(p.tags | unique) }}|"
    # A loop printed is no list to take: the loop goes on over every item.
    body += (
        "{% for t in p.tags %}{{ loop.index }}{% if loop.first %}{{ loop }}{% endif %}{% endfor %}"
    )
    sources = {"t": {"subject.txt": "s", "body.txt": body, "body.html": body}}
    properties = {
        "items": [{"name": "a"}, {"name": True}],
        "tags": ["x", "y", "x"],
        "meta": {"k": None},
    }

    rendered = TemplateSet(sources).render("t", {"event": {"properties": properties}, "user": {}})

    assert rendered.body == (
        '["a",true]|["x","y"]|["x","y","x"]|["x","y","x"]|[["x","y"],["x"]]|["k"]|'
        '[["k",null]]|["k",null]|Tags: ["x","y"]|["x","y"]|["x","y"]|1<LoopContext 1/3>23'
    )
    assert rendered.html == escape(rendered.body)


def test_a_clients_values_joined_or_concatenated_print_in_json_spelling() -> None:
    # `join`, `~` and `string` turned each value into text Python's way: "Items: a, None, True".
    body = "{% set p = event.properties %}{{ p.items | join(', ') }}|{{ 'Auto-pay: ' ~ p.on }}|"
    body += "{{ 'Plan: ' ~ p.plan ~ '.' }}|{{ p.tags ~ p.meta }}|{{ p.on | string }}"
    sources = {"t": {"subject.txt": "s", "body.txt": body, "body.html": body}}
    properties = {
        "items": ["a", None, True, 2.5, {"k": 1}, [1]],
        "on": False,
        "plan": None,
        "tags": ["x"],
        "meta": {"tier": 2},
    }

    rendered = TemplateSet(sources).render("t", {"event": {"properties": properties}, "user": {}})

    assert rendered.body == (
        'a, , true, 2.5, {"k":1}, [1]|Auto-pay: false|Plan: .|["x"]{"tier":2}|false'
    )
    assert rendered.html == rendered.body.replace('"', "&#34;")


def test_a_clients_values_formatted_as_text_print_in_json_spelling_and_as_numbers_stay() -> None:
    # `"%s" | format(on)` gave "True", where `{{ on }}` gives "true".
    body = "{% set p = event.properties %}{{ '%s %r|%s|%s' | format(p.on, p.off, p.plan, p.tags) }}"
    body += "|{{ '%(on)s' | format(on=p.on) }}|{{ '%d %.1f %s' | format(p.on, p.on, 2.5) }}"
    sources = {"t": {"subject.txt": "s", "body.txt": body, "body.html": body}}
    properties = {"on": True, "off": False, "plan": None, "tags": ["x", 1]}

    rendered = TemplateSet(sources).render("t", {"event": {"properties": properties}, "user": {}})

    assert rendered.body == 'true false||["x",1]|true|1 1.0 2.5'
    assert rendered.html == rendered.body.replace('"', "&#34;")


def test_a_clients_values_in_a_texts_format_or_percent_print_in_json_spelling() -> None:
    # `"{}".format(on)` and `"%s" % on` gave "True", where `{{ on }}` gives "true".
    body = "{% set p = event.properties %}{{ '{} {}|{}|{}'.format(p.on, p.off, p.plan, p.tags) }}"
    body += "|{{ '{on}'.format(on=p.on) }}|{{ '{on}'.format_map(p) }}|{{ '{:>5}|'.format(p.on) }}"
    body += "{{ '%s %r' % (p.on, p.tags) }}|{{ '%s' % p.on }}|{{ '%(on)s' % p }}"
    body += "|{{ '%s' % p.meta }}"
    body += "|{{ '{:d} {:.1f}'.format(p.on, p.on) }}|{{ '%d' % p.on }}"
    sources = {"t": {"subject.txt": "s", "body.txt": body, "body.html": body}}
    properties = {"on": True, "off": False, "plan": None, "tags": ["x", 1], "meta": {"k": True}}

    rendered = TemplateSet(sources).render("t", {"event": {"properties": properties}, "user": {}})

    assert rendered.body == (
        'true false||["x",1]|true|true| true|true ["x",1]|true|true|{"k":true}|1 1.0|1'
    )
    assert rendered.html == rendered.body.replace('"', "&#34;")


def test_text_marked_safe_stays_unescaped_when_joined_or_concatenated_in_html() -> None:
    body = "{{ [e.link | safe, e.name] | join(e.br | safe) }}|{{ (e.link | safe) ~ e.name }}"
    sources = {"t": {"subject.txt": "s", "body.txt": "x", "body.html": body}}
    event = {"link": "<b>a</b>", "name": "<i>", "br": "<br>"}

    rendered = TemplateSet(sources).render("t", {"e": event, "event": {}, "user": {}})

    assert rendered.html == "<b>a</b><br>&lt;i&gt;|<b>a</b>&lt;i&gt;"


def test_a_method_called_on_an_absent_value_says_it_is_absent() -> None:
    # Jinja said only "'dict object' has no attribute 'nickname'", naming neither the
    # trait nor what to do.
    body = "{{ user.nickname.title() }}"
    templates = TemplateSet({"hi": {"subject.txt": "Hi", "body.txt": body}})

    with pytest.raises(TemplateProblem) as caught:
        templates.render("hi", {"user": {}, "event": {"properties": {}}})

    assert str(caught.value).startswith(
        "template hi: user.nickname is absent, and the template uses it in a method call "
    )


def test_an_absent_value_given_to_tojson_says_it_is_absent_not_what_python_calls_it() -> None:
    # It said "TypeError: Object of type Absent is not JSON serializable".
    body = "{{ event.properties.meta | tojson }}"
    templates = TemplateSet({"alert": {"subject.txt": "Alert", "body.txt": body}})

    with pytest.raises(TemplateProblem) as caught:
        templates.render("alert", {"user": {}, "event": {"properties": {}}})

    assert str(caught.value) == (
        "template alert: event.properties.meta is absent, and the template uses it in the"
        " `tojson` filter: test it first with `{% if event.properties.meta is defined %}`, or"
        " give it a default with `| default(...)`"
    )


def test_a_trait_not_of_its_declared_type_given_to_tojson_names_the_trait() -> None:
    sources = {"alert": {"subject.txt": "Alert", "body.txt": "{{ user.prefs | tojson }}"}}
    templates = TemplateSet(sources, traits={"prefs": "object"})

    with pytest.raises(TemplateProblem) as caught:
        templates.render("alert", {"user": {"prefs": "dark"}, "event": {}})

    assert str(caught.value) == (
        "template alert: user.prefs is a string, not the object the rule file declares"
    )


def test_tojson_still_prints_the_clients_values() -> None:
    sources = {"alert": {"subject.txt": "Alert", "body.txt": "{{ user.prefs | tojson }}"}}
    templates = TemplateSet(sources, traits={"prefs": "object"})

    rendered = templates.render("alert", {"user": {"prefs": {"b": [1, None], "a": 1}}})

    assert rendered.body == '{"a": 1, "b": [1, null]}'


def test_tojson_writes_text_as_it_is_in_a_text_part_and_escaped_for_html_in_html() -> None:
    # Jinja's own escapes <, >, & and ' for HTML everywhere: a text alert read AT\u0026T.
    sources = {
        "alert": {
            "subject.txt": "{{ event.note | tojson }}",
            "body.txt": "{{ event | tojson }}",
            "body.html": "<p>{{ {'note': 'AT&T <b>'} | tojson }}</p>",
        }
    }
    event = {"note": "AT&T <b>'s</b>", "n": 1}

    rendered = TemplateSet(sources).render("alert", {"user": {}, "event": event})

    assert rendered.subject == '"AT&T <b>\'s</b>"'
    assert rendered.body == '{"n": 1, "note": "AT&T <b>\'s</b>"}'
    assert rendered.html == '<p>{"note": "AT\\u0026T \\u003cb\\u003e"}</p>'


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            "{{ event.text | replace('x', event.pad) }}",
            "replace would make a text of 9,000,000 characters",
        ),
        ("{{ event.text.replace('x', event.pad) }}", "replace would make a text of 9,000,000"),
        ("{{ event.items | join(event.pad) }}", "join would make a text of 8,997,000 characters"),
        ("{{ event.pad.join(event.items) }}", "join would make a text of 8,997,000 characters"),
        (
            "{{ ('\\t' * 3000).expandtabs(event.width) }}",
            "expandtabs would make a text of 9,000,000 characters",
        ),
    ],
    ids=["replace", "replace-method", "join", "join-method", "expandtabs"],
)
def test_two_client_values_cannot_make_a_text_of_gigabytes_in_one_step(
    body: str, said: str
) -> None:
    """Each value within the bounds, one replaced into every letter of the other, or
    joining each item of a list, made gigabytes before the message's limit could refuse
    them (3,000 and 3,000 characters here make 9 million; 100,000 each made 10 billion).
    Refused before the text is built."""
    sources = {"big": {"subject.txt": "Hi", "body.txt": body}}
    event = {"text": "x" * 3000, "pad": "y" * 3000, "items": ["i"] * 3000, "width": 3000}

    tracemalloc.start()
    try:
        with pytest.raises(TemplateProblem) as refused:
            TemplateSet(sources).render("big", {"event": event, "user": {}})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert f"template big: SecurityError: {said}" in str(refused.value)
    assert peak < 4_000_000  # the 9 million characters were never made


def test_a_text_replaced_or_joined_within_the_limit_renders() -> None:
    body = "{{ event.text | replace('x', 'yy') }} {{ event.items | join(', ') }}"
    sources = {"ok": {"subject.txt": "Hi", "body.txt": body}}

    rendered = TemplateSet(sources).render(
        "ok", {"event": {"text": "axbx", "items": ["a", "b"]}, "user": {}}
    )

    assert rendered.body == "ayybyy a, b"
