/*
 * Netwatch supervisor wallboard (plain ES2020, no dependencies, no build step).
 *
 * Page URL:  /wallboard?tserver=1[&group=sales][&profile=growing][#token=SECRET]
 *   tserver  required; the T-Server whose board is shown.
 *   group    optional; without it the board covers the whole T-Server.
 *   profile  optional; growing | interval | last_15m | last_30m | last_60m (default
 *            growing), passed through to the API as is.
 *   #token=  optional bearer token, in the fragment so that it never reaches the server's
 *            logs; sent as "Authorization: Bearer ..." on every API request.
 *
 * Data: GET /v1/wallboard/events (Server-Sent Events). EventSource cannot send an
 * Authorization header, so the stream is read with fetch() and parsed here
 * (SseParser). Events:
 *   snapshot  the whole board: header fields, tiles[] and agents[]
 *   tiles     {now_ms, tiles[]}   replaces the tiles
 *   agent     {now_ms, agent}     inserts or replaces one grid row (status "gone": removes it)
 * The stream always starts with a snapshot; after a drop the page reconnects after 2 s
 * (5 s after a 401) and the new snapshot replaces everything.
 *
 * Display rules (docs/statistics.md): percentages with one decimal ("60.0 %"), durations
 * in whole seconds, halves up ("12 s", "2:30", "1:02:03"), counts as integers, no value
 * as "—". Colours are decided by the server; the page only maps them to CSS classes.
 *
 * Time in status is computed client-side every second from status_since_ms and the
 * browser clock corrected by the server's (offset = now_ms − Date.now() at each event),
 * so the server is never polled.
 *
 * Everything that comes from the network is written with textContent, never innerHTML.
 */
"use strict";

(() => {
  // ---------------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------------

  /** The SSE endpoint. */
  const STREAM_PATH = "/v1/wallboard/events";

  /** Delay before reconnecting after the stream ended or failed. */
  const RETRY_MS = 2000;

  /** Delay before retrying after HTTP 401 (missing or wrong token). */
  const UNAUTHORIZED_RETRY_MS = 5000;

  /**
   * A stream that delivers nothing at all (not even a ":" keep-alive comment) for this
   * long is considered dead (half-open TCP connection after a network change, a proxy
   * that went away) and is reopened. Must stay well above the server's keep-alive period.
   */
  const STALL_TIMEOUT_MS = 45000;

  /** Longest server error message shown in the banner. */
  const MAX_ERROR_CHARS = 160;

  const BANNER_LIVE = "live";
  const BANNER_CONNECTING = "connecting…";
  const BANNER_RETRYING = "disconnected, retrying";
  const BANNER_UNAUTHORIZED = "Unauthorized: open the page with #token=...";

  /** "No value" (U+2014 EM DASH), as the CLI shows it too. */
  const NO_VALUE = "\u2014";

  /** Tile colours the stylesheet knows; anything else is shown grey. */
  const TILE_COLOURS = new Set(["green", "amber", "red", "grey"]);

  /** Human names of the time profiles; an unknown profile is shown by its API name. */
  const PROFILE_LABELS = {
    growing: "Today, since midnight",
    interval: "Current 15-minute interval",
    last_15m: "Last 15 minutes",
    last_30m: "Last 30 minutes",
    last_60m: "Last 60 minutes",
  };

  /** DNs sort like people read them: "5002" before "5010", "900" before "5001". */
  const DN_COLLATOR = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

  // ---------------------------------------------------------------------------------
  // Page parameters
  // ---------------------------------------------------------------------------------

  const query = new URLSearchParams(window.location.search);
  const params = {
    tserver: (query.get("tserver") || "").trim(),
    group: (query.get("group") || "").trim(),
    profile: (query.get("profile") || "").trim() || "growing",
  };

  /**
   * The bearer token from the URL fragment (#token=SECRET, possibly among other
   * `key=value` pairs separated by "&"), or null. Parsed by hand rather than with
   * URLSearchParams, which would turn a "+" (common in base64 tokens) into a space.
   * Read at every connection attempt, so fixing the fragment takes effect at once.
   */
  function readToken() {
    const fragment = window.location.hash.replace(/^#/, "");
    for (const part of fragment.split("&")) {
      if (!part.startsWith("token=")) continue;
      const raw = part.slice("token=".length);
      let token;
      try {
        token = decodeURIComponent(raw);
      } catch (_) {
        token = raw; // Not valid percent-encoding: use it verbatim.
      }
      token = token.trim();
      return token === "" ? null : token;
    }
    return null;
  }

  /** The stream URL for this page's parameters. */
  function streamUrl() {
    const q = new URLSearchParams();
    q.set("tserver", params.tserver);
    if (params.group !== "") q.set("group", params.group);
    q.set("profile", params.profile);
    return `${STREAM_PATH}?${q.toString()}`;
  }

  // ---------------------------------------------------------------------------------
  // Page state
  // ---------------------------------------------------------------------------------

  /** Elements of the static shell (index.html); filled in by start(). */
  const els = {};

  const state = {
    /** Server clock − browser clock, in ms, from the latest event's now_ms. */
    offsetMs: 0,
    /** Formatters for the header clock, in the board's time zone (set by a snapshot). */
    timeFormat: null,
    dateFormat: null,
    /** SSE events applied so far (mirrored to body[data-updates]). */
    updates: 0,
    /** stat -> { el, label, value } for each tile shown. */
    tiles: new Map(),
    /** dn -> { row, agent, status, time, reason, sinceMs, timeText } for each grid row. */
    agents: new Map(),
  };

  /** The server's clock now, in epoch ms, as best known. */
  function serverNow() {
    return Date.now() + state.offsetMs;
  }

  /** Adopts the server clock carried by an event (`now_ms`), if it has one. */
  function syncServerClock(nowMs) {
    if (typeof nowMs === "number" && Number.isFinite(nowMs)) {
      state.offsetMs = nowMs - Date.now();
    }
  }

  // ---------------------------------------------------------------------------------
  // Formatting (docs/statistics.md, "Rounding" and "Thresholds")
  // ---------------------------------------------------------------------------------

  /** Two digits, zero-padded. */
  function pad2(n) {
    return n < 10 ? `0${n}` : String(n);
  }

  /**
   * A duration as people see it: whole seconds, halves up; "12 s" under a minute,
   * "m:ss" from 60 s, "h:mm:ss" from an hour. Negative durations (clock skew) show 0 s.
   */
  function formatDuration(ms) {
    if (typeof ms !== "number" || !Number.isFinite(ms)) return NO_VALUE;
    const total = Math.max(0, Math.floor(ms / 1000 + 0.5));
    if (total < 60) return `${total} s`;
    const seconds = total % 60;
    const minutes = Math.floor(total / 60) % 60;
    const hours = Math.floor(total / 3600);
    if (hours === 0) return `${minutes}:${pad2(seconds)}`;
    return `${hours}:${pad2(minutes)}:${pad2(seconds)}`;
  }

  /** A tile value by its unit: "pct", "ms" or "count"; null or not a number is "—". */
  function formatValue(value, unit) {
    if (value === null || value === undefined) return NO_VALUE;
    const n = typeof value === "number" ? value : Number(value);
    if (!Number.isFinite(n)) return NO_VALUE;
    switch (unit) {
      case "pct":
        // The server already rounded to one decimal; toFixed only pins the digits.
        return `${n.toFixed(1)} %`;
      case "ms":
        return formatDuration(n);
      case "count":
        return String(Math.round(n));
      default:
        // A unit this page does not know yet: show the number rather than nothing.
        return String(n);
    }
  }

  /** A server string made safe to use as one CSS class name component. */
  function classToken(s) {
    return String(s).replace(/[^A-Za-z0-9_-]/g, "_");
  }

  /**
   * Clock formatters for an IANA time zone; an unknown zone falls back to UTC (and
   * reports that through `.fallback`).
   */
  function clockFormats(timeZone) {
    const make = (tz) => ({
      time: new Intl.DateTimeFormat("en-GB", {
        timeZone: tz,
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hourCycle: "h23", // not hour12:false, which can render midnight as "24:00:00"
      }),
      date: new Intl.DateTimeFormat("en-GB", {
        timeZone: tz,
        weekday: "short",
        day: "numeric",
        month: "short",
        year: "numeric",
      }),
      fallback: false,
    });
    try {
      return make(timeZone || "UTC");
    } catch (_) {
      // RangeError: a time zone this browser does not know.
      const formats = make("UTC");
      formats.fallback = true;
      return formats;
    }
  }

  // ---------------------------------------------------------------------------------
  // Rendering: connection banner and header
  // ---------------------------------------------------------------------------------

  /**
   * Sets the connection banner: `ok` true shows it green (stream open), false red.
   * While not ok, the board's figures are dimmed as possibly stale.
   */
  function setConn(ok, text) {
    els.conn.className = ok ? "ok" : "down";
    els.conn.textContent = text;
    if (!ok) document.body.classList.add("stale");
  }

  /** The header: "Sales — T-Server 1", the profile and the time zone. */
  function renderHeader(snapshot) {
    const tserver = snapshot.tserver ?? params.tserver;
    const tserverName = `T-Server ${tserver}`;
    const title = typeof snapshot.title === "string" ? snapshot.title.trim() : "";
    // The title may be the bare object ("Sales", as in the API's example) or already
    // name the T-Server ("Sales — T-Server 1", "T-Server 1"): never name it twice.
    let heading = tserverName;
    if (title !== "") heading = title.includes(tserverName) ? title : `${title} — ${tserverName}`;
    els.title.textContent = heading;
    document.title = `${heading} · Netwatch wallboard`;

    const profile = typeof snapshot.profile === "string" && snapshot.profile !== "" ? snapshot.profile : params.profile;
    els.profile.textContent = PROFILE_LABELS[profile] || profile;

    const timeZone = typeof snapshot.time_zone === "string" && snapshot.time_zone !== "" ? snapshot.time_zone : "UTC";
    const formats = clockFormats(timeZone);
    state.timeFormat = formats.time;
    state.dateFormat = formats.date;
    els.timezone.textContent = formats.fallback ? `${timeZone} (clock in UTC)` : timeZone;
  }

  /** The header clock, once a snapshot told us the time zone. */
  function renderClock(nowMs) {
    if (!state.timeFormat) return;
    const date = new Date(nowMs);
    const time = state.timeFormat.format(date);
    if (els.clock.textContent !== time) els.clock.textContent = time;
    const day = state.dateFormat.format(date);
    if (els.date.textContent !== day) els.date.textContent = day;
  }

  // ---------------------------------------------------------------------------------
  // Rendering: tiles
  // ---------------------------------------------------------------------------------

  /** A new, empty tile element for `stat`. */
  function createTile(stat) {
    const el = document.createElement("div");
    el.dataset.stat = stat;
    const label = document.createElement("div");
    label.className = "label";
    const value = document.createElement("div");
    value.className = "value";
    el.append(label, value);
    return { el, label, value };
  }

  /** Fills a tile from its JSON: label, formatted value, colour class. */
  function updateTile(entry, tile) {
    const hasValue = tile.value !== null && tile.value !== undefined;
    // No value is always grey (the server says so too); unknown colours are grey.
    const colour = hasValue && TILE_COLOURS.has(tile.colour) ? tile.colour : "grey";
    const className = `tile colour-${colour}`;
    if (entry.el.className !== className) entry.el.className = className;

    const label = typeof tile.label === "string" && tile.label !== "" ? tile.label : tile.stat;
    if (entry.label.textContent !== label) entry.label.textContent = label;

    const text = formatValue(tile.value, tile.unit);
    if (entry.value.textContent !== text) entry.value.textContent = text;
  }

  /**
   * Replaces the tiles with `tiles`, in the order given, keyed by `stat`: existing tile
   * elements are updated in place, missing ones removed, new ones created.
   */
  function renderTiles(tiles) {
    if (!Array.isArray(tiles)) return;
    const seen = new Set();
    const ordered = [];
    for (const tile of tiles) {
      if (!tile || typeof tile !== "object") continue;
      const stat = typeof tile.stat === "string" ? tile.stat : "";
      if (stat === "" || seen.has(stat)) continue; // unkeyed or duplicate: skip
      seen.add(stat);
      let entry = state.tiles.get(stat);
      if (!entry) {
        entry = createTile(stat);
        state.tiles.set(stat, entry);
      }
      updateTile(entry, tile);
      ordered.push(entry.el);
    }
    for (const stat of [...state.tiles.keys()]) {
      if (!seen.has(stat)) state.tiles.delete(stat);
    }
    // Only touch the container when the set or order of tiles changed.
    const current = els.tiles.children;
    const same = current.length === ordered.length && ordered.every((el, i) => current[i] === el);
    if (!same) els.tiles.replaceChildren(...ordered);
  }

  // ---------------------------------------------------------------------------------
  // Rendering: agent grid
  // ---------------------------------------------------------------------------------

  /** The DN of an agents[] element as a string, or null if it has none. */
  function agentDn(agent) {
    if (!agent || typeof agent !== "object") return null;
    const dn = agent.dn;
    if (typeof dn === "string" && dn !== "") return dn;
    if (typeof dn === "number" && Number.isFinite(dn)) return String(dn);
    return null;
  }

  /** A new, empty grid row for `dn`. */
  function createRow(dn) {
    const row = document.createElement("tr");
    row.dataset.dn = dn;
    const cell = (cls) => {
      const td = document.createElement("td");
      td.className = cls;
      row.appendChild(td);
      return td;
    };
    const entry = {
      row,
      dn: cell("dn"),
      agent: cell("agent"),
      status: cell("status"),
      time: cell("time"),
      reason: cell("reason"),
      sinceMs: null,
      timeText: null,
    };
    entry.dn.textContent = dn;
    return entry;
  }

  /** Sets a cell's text if it changed (keeps the DOM quiet on repeated events). */
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  /** Fills a grid row from an agents[] element. */
  function updateRow(entry, agent, nowMs) {
    const status = typeof agent.status === "string" && agent.status !== "" ? agent.status : "unknown";
    const className = `status-${classToken(status)}`;
    if (entry.row.className !== className) entry.row.className = className;

    setText(entry.agent, agent.agent_id == null ? "" : String(agent.agent_id));
    setText(entry.status, status.replace(/_/g, " "));
    setText(entry.reason, agent.reason == null ? "" : String(agent.reason));

    const since = agent.status_since_ms;
    entry.sinceMs = typeof since === "number" && Number.isFinite(since) ? since : null;
    renderTime(entry, nowMs);
  }

  /** The "time in status" cell of one row at `nowMs`. */
  function renderTime(entry, nowMs) {
    const text = entry.sinceMs === null ? NO_VALUE : formatDuration(nowMs - entry.sinceMs);
    if (text !== entry.timeText) {
      entry.timeText = text;
      entry.time.textContent = text;
    }
  }

  /** Every "time in status" cell at `nowMs`. */
  function renderTimes(nowMs) {
    for (const entry of state.agents.values()) renderTime(entry, nowMs);
  }

  /** Replaces the whole grid with `agents` (a snapshot), sorted by DN. */
  function replaceAgents(agents) {
    const list = Array.isArray(agents) ? agents : [];
    const nowMs = serverNow();
    state.agents.clear();
    for (const agent of list) {
      const dn = agentDn(agent);
      if (dn === null || agent.status === "gone") continue;
      // A DN listed twice: the later element wins, as a later agent event would.
      let entry = state.agents.get(dn);
      if (!entry) {
        entry = createRow(dn);
        state.agents.set(dn, entry);
      }
      updateRow(entry, agent, nowMs);
    }
    const rows = [...state.agents.entries()]
      .sort((a, b) => DN_COLLATOR.compare(a[0], b[0]))
      .map(([, entry]) => entry.row);
    els.agentsBody.replaceChildren(...rows);
  }

  /** Inserts or replaces the row of one agent; status "gone" removes it. */
  function upsertAgent(agent) {
    const dn = agentDn(agent);
    if (dn === null) return;
    const existing = state.agents.get(dn);
    if (agent.status === "gone") {
      if (existing) {
        existing.row.remove();
        state.agents.delete(dn);
      }
      return;
    }
    if (existing) {
      updateRow(existing, agent, serverNow());
      return;
    }
    const entry = createRow(dn);
    updateRow(entry, agent, serverNow());
    state.agents.set(dn, entry);
    // Keep the rows sorted by DN: insert before the first row with a greater DN.
    let before = null;
    for (const row of els.agentsBody.rows) {
      if (DN_COLLATOR.compare(dn, row.dataset.dn || "") < 0) {
        before = row;
        break;
      }
    }
    els.agentsBody.insertBefore(entry.row, before);
  }

  // ---------------------------------------------------------------------------------
  // Applying stream events
  // ---------------------------------------------------------------------------------

  /** Counts one applied event, for tests: body[data-updates]. */
  function countUpdate() {
    state.updates += 1;
    document.body.dataset.updates = String(state.updates);
  }

  /**
   * Applies one SSE event. Unknown event types and malformed payloads are ignored (and
   * not counted), so a newer server can add events without breaking older pages.
   */
  function handleEvent(type, data) {
    if (type !== "snapshot" && type !== "tiles" && type !== "agent") return;
    let payload;
    try {
      payload = JSON.parse(data);
    } catch (err) {
      console.warn(`wallboard: ignoring a "${type}" event whose data is not JSON`, err);
      return;
    }
    if (!payload || typeof payload !== "object") return;

    // The clock first, so that the rows rendered below use the server's time.
    syncServerClock(payload.now_ms);
    switch (type) {
      case "snapshot":
        renderHeader(payload);
        renderTiles(payload.tiles);
        replaceAgents(payload.agents);
        document.body.classList.remove("stale");
        break;
      case "tiles":
        renderTiles(payload.tiles);
        break;
      case "agent":
        upsertAgent(payload.agent);
        break;
    }
    const nowMs = serverNow();
    renderClock(nowMs);
    renderTimes(nowMs); // the offset may have moved: keep every row consistent
    countUpdate();
  }

  // ---------------------------------------------------------------------------------
  // text/event-stream parser
  // ---------------------------------------------------------------------------------

  /**
   * Incremental parser of the text/event-stream format (HTML Living Standard, "Server-
   * sent events"): lines end with CRLF, LF or CR; `field: value` (one optional space
   * after the colon); `event` names the event (default "message"); `data` lines are
   * joined with "\n"; a blank line dispatches; lines starting with ":" are comments
   * (keep-alives). `id` and `retry` are accepted and ignored: the page reconnects on its
   * own schedule and every connection starts with a full snapshot.
   */
  class SseParser {
    /** @param {(type: string, data: string) => void} onEvent */
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.eventType = "";
      this.dataLines = [];
    }

    /** Feeds decoded text; dispatches every event completed by it. */
    feed(text) {
      if (text === "") return;
      const buf = this.buffer + text;
      const eol = /[\r\n]/g;
      let start = 0;
      let match;
      while ((match = eol.exec(buf)) !== null) {
        const i = match.index;
        let next = i + 1;
        if (buf[i] === "\r") {
          // A CR at the very end may be the first half of a CRLF split across chunks.
          if (next === buf.length) break;
          if (buf[next] === "\n") next += 1;
        }
        this.line(buf.slice(start, i));
        start = next;
        eol.lastIndex = next;
      }
      this.buffer = buf.slice(start);
    }

    /** The stream ended: a pending lone CR ends its line; an unfinished event is dropped. */
    end() {
      if (this.buffer.endsWith("\r")) this.line(this.buffer.slice(0, -1));
      this.buffer = "";
      this.eventType = "";
      this.dataLines = [];
    }

    /** Processes one complete line. */
    line(line) {
      if (line === "") {
        this.dispatch();
        return;
      }
      if (line[0] === ":") return; // comment / keep-alive
      const colon = line.indexOf(":");
      let field = line;
      let value = "";
      if (colon >= 0) {
        field = line.slice(0, colon);
        value = line.slice(colon + 1);
        if (value[0] === " ") value = value.slice(1);
      }
      switch (field) {
        case "event":
          this.eventType = value;
          break;
        case "data":
          this.dataLines.push(value);
          break;
        default:
          // id, retry and unknown fields: ignored.
          break;
      }
    }

    /** A blank line: hands the event over, if it carried any data line. */
    dispatch() {
      const type = this.eventType || "message";
      const lines = this.dataLines;
      this.eventType = "";
      this.dataLines = [];
      if (lines.length === 0) return;
      this.onEvent(type, lines.join("\n"));
    }
  }

  // ---------------------------------------------------------------------------------
  // Connection
  // ---------------------------------------------------------------------------------

  /**
   * Each connection attempt gets a generation number; anything a superseded attempt
   * still does (late events, its failure) is ignored.
   */
  let generation = 0;
  let controller = null;
  let retryTimer = null;

  /** Opens (or reopens) the stream now, dropping any current connection. */
  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (controller) controller.abort();
    const gen = ++generation;
    const ctrl = new AbortController();
    controller = ctrl;
    runStream(gen, ctrl)
      .catch((err) => {
        console.warn("wallboard: stream failed", err);
        return { delayMs: RETRY_MS, text: BANNER_RETRYING };
      })
      .then((outcome) => {
        if (gen !== generation) return; // superseded (e.g. the token changed)
        ctrl.abort(); // release the connection, whatever state it is in
        setConn(false, outcome.text);
        retryTimer = setTimeout(connect, outcome.delayMs);
      });
  }

  /** The server's error message from a failed response body ({"error": "..."}), short. */
  async function errorDetail(response) {
    let text = "";
    try {
      text = await response.text();
    } catch (_) {
      return "";
    }
    try {
      const json = JSON.parse(text);
      if (json && typeof json.error === "string") text = json.error;
    } catch (_) {
      // Not JSON: show the text itself.
    }
    text = text.replace(/\s+/g, " ").trim();
    if (text.length > MAX_ERROR_CHARS) text = `${text.slice(0, MAX_ERROR_CHARS - 1)}…`;
    return text;
  }

  /**
   * One connection: requests the stream, then reads and dispatches it until it ends,
   * fails or stalls. Resolves to what to do next: { delayMs, text } (the banner text
   * while waiting to reconnect).
   */
  async function runStream(gen, ctrl) {
    const headers = { Accept: "text/event-stream" };
    const token = readToken();
    if (token !== null) headers.Authorization = `Bearer ${token}`;

    let response;
    try {
      response = await fetch(streamUrl(), { headers, cache: "no-store", signal: ctrl.signal });
    } catch (_) {
      // Network error, server down, or aborted.
      return { delayMs: RETRY_MS, text: BANNER_RETRYING };
    }

    if (response.status === 401) {
      if (response.body) response.body.cancel().catch(() => {});
      return { delayMs: UNAUTHORIZED_RETRY_MS, text: BANNER_UNAUTHORIZED };
    }
    if (!response.ok) {
      const detail = await errorDetail(response);
      const text = `Server error ${response.status}${detail ? `: ${detail}` : ""}; ${BANNER_RETRYING}`;
      return { delayMs: RETRY_MS, text };
    }
    if (!response.body) {
      // A browser without streaming fetch bodies cannot show a live board.
      return { delayMs: RETRY_MS, text: BANNER_RETRYING };
    }

    if (gen !== generation) return { delayMs: RETRY_MS, text: BANNER_RETRYING };
    setConn(true, BANNER_LIVE);

    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8"); // also drops a leading BOM, as SSE requires
    const parser = new SseParser((type, data) => {
      if (gen === generation) handleEvent(type, data);
    });

    // Stall watchdog: any bytes (events or keep-alive comments) re-arm it.
    let stallTimer = null;
    const armWatchdog = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => ctrl.abort(), STALL_TIMEOUT_MS);
    };

    try {
      armWatchdog();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (gen !== generation) break;
        armWatchdog();
        parser.feed(decoder.decode(value, { stream: true }));
      }
      parser.feed(decoder.decode()); // flush a trailing partial character
    } catch (_) {
      // Connection reset, or aborted by the watchdog or by connect().
    } finally {
      clearTimeout(stallTimer);
      parser.end();
      reader.cancel().catch(() => {});
    }
    return { delayMs: RETRY_MS, text: BANNER_RETRYING };
  }

  // ---------------------------------------------------------------------------------
  // Clock tick
  // ---------------------------------------------------------------------------------

  /**
   * Re-renders the header clock and every "time in status" cell once a second, just
   * after each second of the server-corrected clock so that the clock ticks evenly.
   */
  function tick() {
    const nowMs = serverNow();
    renderClock(nowMs);
    renderTimes(nowMs);
    const intoSecond = ((nowMs % 1000) + 1000) % 1000;
    setTimeout(tick, 1000 - intoSecond + 20);
  }

  // ---------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------

  function start() {
    els.title = document.getElementById("title");
    els.profile = document.getElementById("profile");
    els.timezone = document.getElementById("timezone");
    els.clock = document.getElementById("clock");
    els.date = document.getElementById("date");
    els.conn = document.getElementById("conn");
    els.tiles = document.getElementById("tiles");
    els.agentsBody = document.querySelector("#agents > tbody");

    document.body.dataset.updates = String(state.updates);
    els.profile.textContent = PROFILE_LABELS[params.profile] || params.profile;

    // The T-Server is required; its form is the server's to check (a 400 is shown).
    if (params.tserver === "") {
      setConn(false, "No T-Server: open the page as /wallboard?tserver=N[&group=NAME]");
      return;
    }
    const tserverName = `T-Server ${params.tserver}`;
    els.title.textContent = params.group !== "" ? `${params.group} — ${tserverName}` : tserverName;

    setConn(false, BANNER_CONNECTING);
    tick();
    connect();

    // A token added or corrected in the fragment (e.g. after "Unauthorized") is used
    // at once instead of at the next retry.
    window.addEventListener("hashchange", connect);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
