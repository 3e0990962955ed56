// safe-exec playground: an editor, a Run button and the answer laid out for a person.
// It speaks only the public API (POST /execute, GET /health). An API key, when the service
// asks for one, lives in `apiKey` below and nowhere else: no storage, no cookie.
"use strict";

(function () {
  const EXAMPLES = [
    {
      id: "happy",
      label: "Hello (happy path)",
      script: [
        "import sys",
        "",
        "",
        "def main():",
        '    print("hello from the sandbox")',
        '    print("stderr is captured separately", file=sys.stderr)',
        '    return {"sum": sum(range(10)), "squares": [n * n for n in range(5)]}',
        "",
      ].join("\n"),
    },
    {
      id: "no-main",
      label: "NO_MAIN",
      script: [
        "# Top-level code runs, but there is no main() to call.",
        "print(123)",
        "",
      ].join("\n"),
    },
    {
      id: "non-json",
      label: "NON_JSON_RETURN",
      script: [
        "def main():",
        "    # A set is not JSON: return a list instead.",
        "    return set([1, 2])",
        "",
      ].join("\n"),
    },
    {
      id: "empty-output",
      label: "EMPTY_OUTPUT",
      script: [
        "import os",
        "",
        "",
        "def main():",
        "    # The process ends without reporting anything: no result, no exception.",
        "    os._exit(3)",
        "",
      ].join("\n"),
    },
    {
      id: "timeout",
      label: "TIMEOUT",
      script: [
        "def main():",
        "    while True:",
        "        pass",
        "",
      ].join("\n"),
    },
    {
      id: "runtime-error",
      label: "RUNTIME_ERROR",
      script: [
        "def ratio(a, b):",
        "    return a / b",
        "",
        "",
        "def main():",
        '    print("dividing...")',
        "    return ratio(1, 0)",
        "",
      ].join("\n"),
    },
    {
      id: "input-stdin",
      label: "input & stdin",
      script: [
        "import sys",
        "",
        "",
        "def main(numbers):",
        "    # numbers: the request's `input`; stdin: its `stdin`.",
        "    lines = sys.stdin.read().splitlines()",
        '    print("read", len(lines), "lines from stdin")',
        '    return {"total": sum(numbers), "largest": max(numbers), "lines": lines}',
        "",
      ].join("\n"),
      input: "[3, 1, 4, 1, 5, 9, 2, 6]",
      stdin: "first line\nsecond line\n",
    },
    {
      id: "pandas",
      label: "pandas",
      script: [
        "import json",
        "",
        "import pandas as pd",
        "",
        "",
        "def main():",
        "    df = pd.DataFrame({",
        '        "team": ["a", "b", "a", "c", "b", "a"],',
        '        "score": [3, 5, 4, 2, 1, 6],',
        "    })",
        '    by_team = df.groupby("team")["score"]',
        '    summary = by_team.agg(["count", "sum", "mean"])',
        "    print(summary)",
        "    # pandas writes the JSON (json.dumps refuses numpy ints).",
        '    records = summary.reset_index().to_json(orient="records")',
        "    return json.loads(records)",
        "",
      ].join("\n"),
    },
  ];

  const LIMIT_LABELS = {
    wall_time_s: ["Wall time", (v) => v + " s"],
    cpu_time_s: ["CPU time", (v) => v + " s"],
    memory_mb: ["Memory", (v) => v + " MiB"],
    timeout_s: ["Wall time", (v) => v + " s"],
    max_processes: ["Processes", String],
    max_open_files: ["Open files", String],
    tmp_size_mb: ["/tmp size", (v) => v + " MiB"],
    stdout_cap_bytes: ["stdout cap", formatBytes],
    stderr_cap_bytes: ["stderr cap", formatBytes],
    result_cap_bytes: ["Result cap", formatBytes],
    script_cap_bytes: ["Script cap", formatBytes],
  };
  // Fields of a failure shown in their own place rather than in the details list.
  const SHOWN_ELSEWHERE = new Set([
    "error", "message", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
    "usage", "limits", "traceback", "result",
  ]);

  const $ = (id) => document.getElementById(id);
  let apiKey = null; // only ever here: never persisted
  let healthLimits = null;
  let limitsFromAnswer = false; // the limits shown came with an answer, not from /health
  let running = false;

  // ---- formatting -------------------------------------------------------------------------

  function formatBytes(n) {
    if (typeof n !== "number") return String(n);
    if (n >= 1024 * 1024) return (n / (1024 * 1024)).toFixed(1).replace(/\.0$/, "") + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(1).replace(/\.0$/, "") + " KiB";
    return n + " B";
  }

  function formatMs(ms) {
    if (typeof ms !== "number") return String(ms);
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms.toFixed(1) + " ms";
  }

  // The answer's `result` with its numbers exactly as the service wrote them (Python's
  // integers have no 53-bit limit, 1.0 stays 1.0), where the browser can (JSON.rawJSON), for
  // JSON.stringify to print back; the plain parse elsewhere.
  function exactResult(text, parsed) {
    if (typeof JSON.rawJSON !== "function") return parsed.result;
    return JSON.parse(text, function (_key, value, context) {
      if (typeof value === "number" && context && String(value) !== context.source) {
        return JSON.rawJSON(context.source);
      }
      return value;
    }).result;
  }

  function fillFacts(dl, rows) {
    dl.replaceChildren();
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  // ---- the editor -------------------------------------------------------------------------

  function makeEditor() {
    const textarea = $("script");
    if (typeof window.CodeMirror !== "function") {
      // The page stays usable with a plain textarea if the editor failed to load.
      return {
        getValue: () => textarea.value,
        setValue: (v) => { textarea.value = v; },
        focus: () => textarea.focus(),
      };
    }
    let leaving = false; // Esc was pressed: the next Tab leaves the editor
    const leave = (step) => {
      leaving = false;
      const examples = document.querySelectorAll("#examples button");
      (step > 0 || examples.length === 0 ? $("run") : examples[examples.length - 1]).focus();
    };
    const cm = window.CodeMirror.fromTextArea(textarea, {
      mode: { name: "python", version: 3 },
      lineNumbers: true,
      indentUnit: 4,
      indentWithTabs: false,
      matchBrackets: true,
      screenReaderLabel: "Python script",
      extraKeys: {
        "Ctrl-Enter": () => run(),
        "Cmd-Enter": () => run(),
        Esc: () => { leaving = true; },
        Tab: (c) => {
          if (leaving) return leave(1);
          c.execCommand(c.somethingSelected() ? "indentMore" : "insertSoftTab");
        },
        "Shift-Tab": (c) => {
          if (leaving) return leave(-1);
          c.execCommand("indentLess");
        },
      },
    });
    cm.on("keydown", (_c, event) => {
      if (event.key !== "Escape" && event.key !== "Tab") leaving = false;
    });
    cm.on("blur", () => { leaving = false; });
    // The label points at the hidden textarea; send its clicks to the editor.
    document.querySelector("label[for=script]").addEventListener("click", () => cm.focus());
    return cm;
  }

  // ---- input and limits (contract v2's optional fields) ------------------------------------

  const FIELD_ERRORS = { input: "input-error", "timeout-s": "limits-error",
    "memory-mb": "limits-error" };

  // An inline message next to the field to blame (`id`), or none anywhere (`id` null).
  function setFieldError(id, message) {
    for (const [field, errorId] of Object.entries(FIELD_ERRORS)) {
      $(field).removeAttribute("aria-invalid");
      $(errorId).hidden = true;
    }
    if (id === null) return;
    $(id).setAttribute("aria-invalid", "true");
    $(FIELD_ERRORS[id]).textContent = message;
    $(FIELD_ERRORS[id]).hidden = false;
  }

  // The request body's text, or {invalid} naming what is wrong (then nothing is sent). `input`
  // goes in as the person wrote it, once JSON.parse has accepted it: re-encoding would round
  // big integers to doubles and 1.0 to 1. Ranges are the server's to judge (its message says
  // what it accepts), so only what could not be a number at all is stopped here.
  function requestBody(script) {
    const parts = ['"script": ' + JSON.stringify(script)];
    const input = $("input").value;
    if (input.trim() !== "") {
      try {
        JSON.parse(input);
      } catch (err) {
        return { invalid: "input", what: "the input is not valid JSON",
          message: "The input is not valid JSON: " +
            (err && err.message ? err.message : String(err)) + ". Nothing was sent." };
      }
      parts.push('"input": ' + input.trim());
    }
    const stdin = $("stdin").value;
    if (stdin !== "") parts.push('"stdin": ' + JSON.stringify(stdin));
    for (const [id, field] of [["timeout-s", "timeout_s"], ["memory-mb", "memory_mb"]]) {
      const box = $(id);
      if (box.validity.badInput) {
        return { invalid: id, what: field + " is not a number",
          message: "The " + field + " field is not a number. Nothing was sent." };
      }
      if (box.value.trim() !== "") parts.push(JSON.stringify(field) + ": " + Number(box.value));
    }
    return { text: "{" + parts.join(", ") + "}" };
  }

  function fillOptions(example) {
    $("input").value = example.input || "";
    $("stdin").value = example.stdin || "";
    $("timeout-s").value = "";
    $("memory-mb").value = "";
    setFieldError(null);
    if (example.input || example.stdin) $("options").open = true;
  }

  // The most a request may ask for, from /health, as the fields' bounds and placeholders.
  function boundOptions(limits) {
    const timeout = $("timeout-s");
    const memory = $("memory-mb");
    if (!limits) return;
    if (typeof limits.wall_time_s === "number") {
      timeout.max = String(limits.wall_time_s);
      timeout.placeholder = limits.wall_time_s + " (the server's)";
    }
    if (typeof limits.memory_mb === "number") {
      memory.max = String(limits.memory_mb);
      memory.placeholder = limits.memory_mb + " (the server's)";
    }
    if (typeof limits.wall_time_s === "number" && typeof limits.memory_mb === "number") {
      $("limits-hint").textContent = "Empty: the server's limit. A request can only lower " +
        "it: timeout_s above 0 and at most " + limits.wall_time_s + " s, memory_mb from 16 " +
        "to " + limits.memory_mb + ".";
    }
  }

  // ---- the answer -------------------------------------------------------------------------

  function clearAnswer() {
    for (const id of ["error-block", "traceback-block", "result-block", "stdout-block",
      "stderr-block", "usage-block"]) {
      show(id, false);
    }
  }

  function setState(state, text) {
    const answer = $("answer");
    answer.dataset.state = state;
    answer.setAttribute("aria-busy", state === "running" ? "true" : "false");
    $("status").textContent = text;
  }

  function showStream(name, body) {
    const text = typeof body[name] === "string" ? body[name] : "";
    $(name).textContent = text === "" ? "(empty)" : text;
    $(name).classList.toggle("empty", text === "");
    $(name + "-note").textContent = body[name + "_truncated"] ? "(cut at its cap)" : "";
    show(name + "-block", typeof body[name] === "string");
  }

  function showUsage(usage) {
    if (!usage || typeof usage !== "object") {
      show("usage-block", false);
      return;
    }
    const rows = [];
    if ("wall_time_ms" in usage) rows.push(["Wall time", formatMs(usage.wall_time_ms)]);
    if ("cpu_time_ms" in usage) rows.push(["CPU time", formatMs(usage.cpu_time_ms)]);
    if ("peak_memory_bytes" in usage) {
      rows.push(["Peak memory", formatBytes(usage.peak_memory_bytes)]);
    }
    for (const [k, v] of Object.entries(usage)) {
      if (!["wall_time_ms", "cpu_time_ms", "peak_memory_bytes"].includes(k)) {
        rows.push([k, JSON.stringify(v)]);
      }
    }
    fillFacts($("usage"), rows);
    show("usage-block", true);
  }

  function showLimits(limits, source) {
    if (!limits || typeof limits !== "object") {
      show("limits-block", false);
      return;
    }
    const rows = Object.entries(limits).map(([k, v]) => {
      const known = LIMIT_LABELS[k];
      if (!known) return [k, typeof v === "string" ? v : JSON.stringify(v)];
      // A request's timeout_s / memory_mb lowers the server's limit: say from what.
      const server = healthLimits && limits !== healthLimits ? healthLimits[k] : undefined;
      const lowered = typeof v === "number" && typeof server === "number" && v < server;
      return [known[0], known[1](v) + (lowered ? " (lowered from " + known[1](server) + ")" : "")];
    });
    fillFacts($("limits"), rows);
    $("limits-source").textContent = source;
    show("limits-block", true);
  }

  function showError(code, message, details) {
    $("error-code").textContent = code;
    $("error-message").textContent = message;
    const rows = Object.entries(details || {}).map(([k, v]) => [
      k, typeof v === "string" ? v : JSON.stringify(v),
    ]);
    fillFacts($("error-details"), rows);
    show("error-details", rows.length > 0);
    show("error-block", true);
  }

  function showBody(status, body, text) {
    if ("result" in body && !("error" in body)) {
      $("result").textContent = JSON.stringify(exactResult(text, body), null, 2);
      show("result-block", true);
      setState("done", "Done: main() returned (HTTP " + status + ").");
    } else {
      const details = {};
      for (const [k, v] of Object.entries(body)) {
        if (!SHOWN_ELSEWHERE.has(k)) details[k] = v;
      }
      showError(String(body.error), String(body.message || ""), details);
      if (typeof body.traceback === "string") {
        $("traceback").textContent = body.traceback;
        show("traceback-block", true);
      }
      setState("error", "Failed with " + body.error + " (HTTP " + status + ").");
    }
    showStream("stdout", body);
    showStream("stderr", body);
    showUsage(body.usage);
    limitsFromAnswer = Boolean(body.limits);
    if (limitsFromAnswer) showLimits(body.limits, "(this execution's)");
    else showLimits(healthLimits, "(the service's, from /health)");
  }

  // ---- talking to the service ---------------------------------------------------------------

  async function readJson(response) {
    const text = await response.text();
    try {
      return { body: JSON.parse(text), text: text };
    } catch (_err) {
      return { body: null, text: text };
    }
  }

  // The service's answer, or {networkError} when none came (refused, reset, offline). Only
  // the exchange is guarded: a bug in laying out an answer must surface as the error it is.
  async function post(payload) {
    const headers = { "Content-Type": "application/json" };
    if (apiKey !== null) headers.Authorization = "Bearer " + apiKey;
    try {
      const response = await fetch("/execute", {
        method: "POST",
        headers: headers,
        body: payload,
        cache: "no-store",
        credentials: "omit",
      });
      const { body, text } = await readJson(response);
      return { response: response, body: body, text: text };
    } catch (err) {
      return { networkError: err && err.message ? err.message : String(err) };
    }
  }

  function needsKey(answer) {
    return !answer.networkError && answer.response.status === 401 &&
      answer.body !== null && answer.body.error === "UNAUTHORIZED";
  }

  async function run() {
    if (running) return;
    clearAnswer();
    setFieldError(null);
    const body = requestBody(editor.getValue());
    if (body.invalid) {
      setFieldError(body.invalid, body.message);
      $("options").open = true;
      $(body.invalid).focus();
      setState("error", "Not sent: " + body.what + " (see \u201cInput and limits\u201d).");
      return;
    }
    running = true;
    $("run").disabled = true;
    setState("running", "Running\u2026");
    try {
      let answer = await post(body.text);
      while (needsKey(answer)) {
        const key = await askForKey(apiKey !== null
          ? "The service refused that key. Enter another one."
          : "This service requires an API key.");
        if (key === null) break;
        setState("running", "Running\u2026");
        answer = await post(body.text);
      }
      report(answer);
    } finally {
      running = false;
      $("run").disabled = false;
    }
  }

  function report(answer) {
    clearAnswer();
    if (answer.networkError) {
      showError("NETWORK_ERROR", "The service could not be reached (" + answer.networkError +
        "). Is it running?", {});
      setState("error", "Network error: no answer from the service.");
      return;
    }
    const { response, body, text } = answer;
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      showError("HTTP_" + response.status,
        "The service answered HTTP " + response.status + " with a body that is not the " +
        "service's JSON (a proxy in between?).",
        { body: text.slice(0, 500) });
      setState("error", "Unexpected answer (HTTP " + response.status + ").");
      return;
    }
    showBody(response.status, body, text);
    const code = body.error;
    if (response.status === 429 || code === "BUSY") {
      const retry = response.headers.get("Retry-After") || body.retry_after_s;
      const wait = retry ? "Try again in " + retry + " s." : "Try again shortly.";
      setState("error", "The service is busy: every slot and the queue are full. " + wait);
    } else if (response.status === 401) {
      setState("error", "Not run: the service requires an API key.");
    } else if (response.status === 413) {
      setState("error", "Not run: the script is larger than the service accepts.");
    } else if (response.status === 503) {
      setState("error", "The service is unavailable" +
        (body.reason ? " (" + body.reason + ")" : "") + ". Try again later.");
    }
  }

  async function loadHealth() {
    const line = $("service");
    try {
      const response = await fetch("/health", { cache: "no-store", credentials: "omit" });
      const { body } = await readJson(response);
      if (!body || typeof body !== "object") {
        line.textContent = "Service: /health answered HTTP " + response.status + " (not JSON).";
        return;
      }
      healthLimits = body.limits || null;
      boundOptions(healthLimits);
      if (!limitsFromAnswer) showLimits(healthLimits, "(the service's, from /health)");
      if (body.ok) {
        line.textContent = body.warming
          ? "Service: ready soon (the sandboxes are warming up)."
          : "Service: ready, sandbox " + body.sandbox + ".";
      } else {
        line.textContent = "Service: unavailable (" + (body.reason || body.message) + ").";
      }
      line.dataset.ok = body.ok ? "true" : "false";
      if (body.warming) setTimeout(loadHealth, 1000);
    } catch (err) {
      line.textContent = "Service: unreachable (" + (err && err.message) + ").";
      line.dataset.ok = "false";
    }
  }

  // ---- the API key --------------------------------------------------------------------------

  let keyResolve = null;

  function askForKey(why) {
    const dialog = $("key-dialog");
    $("key-why").textContent = why + " It is kept only in this page's memory (gone when you " +
      "reload or close it) and sent as Authorization: Bearer.";
    $("key-input").value = "";
    return new Promise((resolve) => {
      keyResolve = resolve;
      dialog.showModal();
      $("key-input").focus();
    });
  }

  function closeKeyDialog(key) {
    const dialog = $("key-dialog");
    if (dialog.open) dialog.close();
    $("key-input").value = "";
    if (key !== null) apiKey = key;
    updateKeyControls();
    const resolve = keyResolve;
    keyResolve = null;
    if (resolve) resolve(key);
  }

  function updateKeyControls() {
    show("key-controls", true);
    $("key-state").textContent = apiKey === null ? "API key: none" : "API key: set (in memory)";
    $("key-change").textContent = apiKey === null ? "Set key" : "Change key";
    show("key-forget", apiKey !== null);
  }

  function wireKeyDialog() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (key !== "") closeKeyDialog(key);
    });
    $("key-cancel").addEventListener("click", () => closeKeyDialog(null));
    $("key-dialog").addEventListener("cancel", (event) => { // Esc
      event.preventDefault();
      closeKeyDialog(null);
    });
    $("key-change").addEventListener("click", () => {
      askForKey("Enter the API key to use.");
    });
    $("key-forget").addEventListener("click", () => {
      apiKey = null;
      updateKeyControls();
    });
  }

  // ---- start ------------------------------------------------------------------------------

  function wireExamples() {
    const list = $("examples");
    for (const example of EXAMPLES) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "example";
      button.dataset.example = example.id;
      button.textContent = example.label;
      button.addEventListener("click", () => {
        editor.setValue(example.script);
        fillOptions(example);
        clearAnswer();
        setState("idle", "Example \u201c" + example.label + "\u201d loaded. Press Run.");
      });
      item.append(button);
      list.append(item);
    }
  }

  const editor = makeEditor();
  if (editor.getValue().trim() === "") editor.setValue(EXAMPLES[0].script);
  wireExamples();
  wireKeyDialog();
  $("run").addEventListener("click", () => run());
  document.addEventListener("keydown", (event) => {
    // Outside the editor too (the editor's own binding already handled its keystrokes).
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.defaultPrevented &&
        !$("key-dialog").open) {
      event.preventDefault();
      run();
    }
  });
  loadHealth();
})();
