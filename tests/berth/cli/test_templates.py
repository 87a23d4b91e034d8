"""--format: the Go-template subset docker users type, json and table."""

from __future__ import annotations

from typing import Any

import pytest

from berth.cli.templates import (
    TemplateError,
    TemplateExecError,
    compile_template,
    parse_format,
    render_rows,
    tabulate,
)

DATA: dict[str, Any] = {
    "Name": "/web",
    "Config": {"Cmd": ["sleep", "10"], "Labels": {"a": "1", "b": "2"}, "Env": ["A=1"]},
    "State": {"Status": "exited", "Pid": 42, "Running": False, "Health": None},
    "HostConfig": {"Memory": 536870912, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}},
}


def render(source: str, data: Any = DATA) -> str:
    return compile_template(source).render(data)


@pytest.mark.parametrize(
    ("source", "output"),
    [
        ("{{.Name}}", "/web"),
        ("{{.State.Pid}} {{.State.Running}}", "42 false"),
        ("{{.Config.Cmd}}", "[sleep 10]"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        ("{{.HostConfig.RestartPolicy}}", "map[MaximumRetryCount:0 Name:no]"),
        ("{{json .Config.Labels}}", '{"a":"1","b":"2"}'),
        ("{{.HostConfig.Memory}}", "536870912"),
        ('{{index .Config.Labels "a"}}', "1"),
        ("{{.Config.Labels.b}}", "2"),
        ('{{join .Config.Cmd " "}}', "sleep 10"),
        ("{{len .Config.Env}}", "1"),
        ("{{upper .Name | lower}}", "/web"),
        ('{{printf "%s:%05d" .Name .State.Pid}}', "/web:00042"),
        ("{{range .Config.Cmd}}<{{.}}>{{end}}", "<sleep><10>"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
        ("{{range .Nothing}}x{{else}}empty{{end}}", "empty"),
        (
            '{{if eq .State.Status "running"}}up{{else if eq .State.Status "exited"}}down{{end}}',
            "down",
        ),
        ("{{if .State.Running}}up{{else}}not{{end}}", "not"),
        ("{{with .State}}{{.Status}}{{end}}", "exited"),
        ("{{$n := .Name}}{{$n}}{{$.State.Pid}}", "/web42"),
        ("a {{- /* note */ -}} b", "ab"),
        ("{{.Name -}}   \n  x", "/webx"),
        ('{{pad "x" 1 2}}|{{truncate "abcdef" 3}}', " x  |abc"),
        ("{{not .State.Running}} {{and 1 0}} {{or 0 2}}", "true 0 2"),
    ],
)
def test_render_go_template_subset(source: str, output: str) -> None:
    assert render(source) == output


def test_missing_key_is_no_value_string_maps_give_empty() -> None:
    assert render("{{.Nope}}") == "<no value>"
    assert render('{{index .Config.Labels "zz"}}|{{.Config.Labels.zz}}') == "|"


def test_field_of_nil_is_an_execution_error_naming_the_reference() -> None:
    with pytest.raises(TemplateExecError, match=r"<\.State\.Health\.Status>: nil pointer"):
        render("{{.State.Health.Status}}")


def test_method_values_take_arguments() -> None:
    assert render('{{.Label "tier"}}', {"Label": lambda name: f"<{name}>"}) == "<tier>"


@pytest.mark.parametrize(
    "source", ["{{.A", "{{if .A}}x", "{{end}}", "{{nosuch .A}}", "{{.A | }}", "{{else}}"]
)
def test_malformed_templates_are_parse_errors(source: str) -> None:
    with pytest.raises(TemplateError):
        compile_template(source)


def test_format_json_one_line_per_row_without_methods() -> None:
    rows = [{"ID": "abc", "Label": lambda name: ""}]
    assert render_rows(parse_format("json"), rows) == ['{"ID":"abc"}']
    assert render_rows(parse_format("{{json .}}"), rows) == ['{"ID":"abc"}']


def test_format_table_header_from_header_row_and_aligned_columns() -> None:
    form = parse_format("table {{.ID}}\\t{{.Names}}")
    rows = [{"ID": "abc", "Names": "one"}, {"ID": "abcdefabcdef", "Names": "two"}]

    lines = render_rows(form, rows, header={"ID": "CONTAINER ID", "Names": "NAMES"})

    assert lines == ["CONTAINER ID   NAMES", "abc            one", "abcdefabcdef   two"]


def test_tabulate_minimum_width_ten_and_padding_three_as_docker_s_tabwriter() -> None:
    assert tabulate(["a\tb", "cc\td"]) == ["a         b", "cc        d"]
