// The live feed: the websocket `llm/ws`, reconnecting by itself and resuming after the last event
// it saw; where websockets do not get through (a proxy that drops them), the long poll `llm/events`.
//
// Listeners: "call" ({detail: LiveCallMessage}), "status" ({detail: status body}), "reset"
// (the view must reload: the client fell behind, or it reconnected without knowing where it was),
// "state" ({detail: "connecting" | "live" | "reconnecting" | "polling" | "offline" | "signed-out"}).

import { ApiError } from "./api.js";

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
const WS_ATTEMPTS_BEFORE_POLLING = 2; // consecutive sockets that never opened
const WS_RETRY_WHILE_POLLING_MS = 60_000;
const POLL_TIMEOUT_S = 25;

export class LiveFeed extends EventTarget {
  constructor(api) {
    super();
    this.api = api;
    this.lastEventId = null;
    this.state = "connecting";
    this.socket = null;
    this.failedOpens = 0;
    this.retries = 0;
    this.stopped = false;
    this.polling = false;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.polling = false;
    this.pollController?.abort();
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
    }
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  connect() {
    if (this.stopped) return;
    let socket;
    try {
      socket = new WebSocket(this.api.wsUrl(this.lastEventId));
    } catch {
      this.socketFailed(false);
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      const resumed = this.retries > 0 || this.polling;
      this.failedOpens = 0;
      this.retries = 0;
      this.stopPolling();
      this.setState("live");
      // Without an event id to resume from, what happened while away is unknown: reload the view.
      if (resumed && this.lastEventId === null) this.dispatchEvent(new CustomEvent("reset"));
    };
    socket.onmessage = (message) => this.receive(message.data);
    socket.onclose = () => {
      if (this.socket === socket) this.socket = null;
      this.socketFailed(opened);
    };
  }

  socketFailed(opened) {
    if (this.stopped) return;
    if (!opened) this.failedOpens += 1;
    if (this.failedOpens >= WS_ATTEMPTS_BEFORE_POLLING) {
      this.startPolling();
      return;
    }
    this.setState("reconnecting");
    const delay = BACKOFF_MS[Math.min(this.retries, BACKOFF_MS.length - 1)];
    this.retries += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    this.handle(message);
  }

  handle(message) {
    if (message.type === "llm.call") {
      if (this.lastEventId !== null && message.event_id <= this.lastEventId) return; // seen already
      this.lastEventId = message.event_id;
      this.dispatchEvent(new CustomEvent("call", { detail: message }));
    } else if (message.type === "llm.status") {
      // The first status of a connection says where the feed stood: a reconnect resumes from there.
      if (this.lastEventId === null && Number.isInteger(message.last_event_id)) this.lastEventId = message.last_event_id;
      this.dispatchEvent(new CustomEvent("status", { detail: message }));
    } else if (message.type === "llm.reset") {
      this.lastEventId = message.last_event_id ?? this.lastEventId;
      this.dispatchEvent(new CustomEvent("reset"));
      this.socket?.close(); // reconnect with after=last_event_id
    }
  }

  // -- the long-poll fallback ----------------------------------------------------------------------

  startPolling() {
    if (this.polling || this.stopped) return;
    this.polling = true;
    this.setState("polling");
    this.poll();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tryWebSocketAgain(), WS_RETRY_WHILE_POLLING_MS);
  }

  stopPolling() {
    this.polling = false;
    this.pollController?.abort();
  }

  tryWebSocketAgain() {
    if (!this.polling || this.stopped) return;
    this.failedOpens = WS_ATTEMPTS_BEFORE_POLLING - 1; // one failed open goes back to polling
    this.connect();
    this.timer = setTimeout(() => this.tryWebSocketAgain(), WS_RETRY_WHILE_POLLING_MS);
  }

  async poll() {
    let failures = 0;
    while (this.polling && !this.stopped) {
      this.pollController = new AbortController();
      try {
        // Without a position yet, ask for what happens from now on (after=0 would replay the store).
        const body = await this.api.events(this.lastEventId, POLL_TIMEOUT_S, {
          signal: this.pollController.signal,
        });
        failures = 0;
        for (const message of body.events) this.handle(message);
        if (this.lastEventId === null || body.last_event_id > this.lastEventId) this.lastEventId = body.last_event_id;
        if (this.polling) this.setState("polling");
      } catch (error) {
        if (error.name === "AbortError") return;
        if (error instanceof ApiError && error.status === 401) {
          this.setState("signed-out");
          return;
        }
        this.setState("offline");
        failures += 1;
        await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)]));
      }
    }
  }
}
