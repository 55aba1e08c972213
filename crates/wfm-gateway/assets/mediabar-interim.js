// INTERIM: a minimal stand-in for clients/mediabar/dist/mediabar.js (the MediaBar client
// library), with the same public API, so that the demo page works until the library's
// built file is committed. The gateway serves it at /mediabar.js; it goes once the dist does.
export class MediaBarError extends Error { constructor(code, message, data, view) { super(message); this.code = code; this.data = data; this.view = view; } }
export class ViewStore {
  constructor() { this.views = new Map(); this.listeners = new Set(); }
  get(t) { return this.views.get(t); } targets() { return [...this.views.keys()]; }
  subscribe(f) { this.listeners.add(f); return () => this.listeners.delete(f); }
  apply(ev) {
    const prev = this.views.get(ev.target);
    if (ev.context.state === 'ended') { if (prev) { this.views.delete(ev.target); this.notify(ev.target, undefined); } return; }
    const capabilities = {}, order = [];
    for (const { name, type } of ev.data) { order.push(name); capabilities[name] = type; }
    const since = prev && prev.context.state === ev.context.state ? prev.since : Date.now();
    const v = { target: ev.target, context: { ...ev.context }, capabilities, order, since };
    this.views.set(ev.target, v); this.notify(ev.target, v);
  }
  clear() { const t = this.targets(); this.views.clear(); for (const x of t) this.notify(x, undefined); }
  notify(t, v) { for (const f of [...this.listeners]) try { f(t, v); } catch (e) { setTimeout(() => { throw e; }); } }
}
export class MediaBar {
  constructor(o) { this.o = o; this.views = new ViewStore(); this.connection = 'connecting'; this.service = 'unknown'; this.sessionId = undefined; this.seq = 0; this.pending = new Map(); this.ls = {}; this.ref = null; this.retry = 0; this.connect(); }
  on(e, f) { (this.ls[e] ||= new Set()).add(f); return () => this.ls[e].delete(f); }
  emit(e, x) { for (const f of [...(this.ls[e] || [])]) f(x); }
  setConn(s) { this.connection = s; this.emit('connection', s); }
  connect() {
    this.setConn('connecting');
    const ws = this.ws = new WebSocket(this.o.url);
    ws.onopen = () => { this.retry = 0; this.setConn('open'); this.core('getServices', {}).then(d => { this.service = 'available'; this.emit('service', 'available'); }, () => {}); if (this.ref) this.bind(this.ref, { takeover: true }).catch(() => {}); };
    ws.onclose = () => { this.setConn('closed'); for (const [, p] of this.pending) p.reject(new MediaBarError('serviceUnavailable', 'connection lost')); this.pending.clear(); setTimeout(() => this.connect(), Math.min(5000, 250 * 2 ** this.retry++)); };
    ws.onmessage = (m) => this.handle(JSON.parse(m.data));
  }
  send(msg) { const requestId = 'r' + (++this.seq); this.ws.send(JSON.stringify({ ...msg, requestId })); return new Promise((resolve, reject) => this.pending.set(requestId, { resolve, reject })); }
  core(request, data) { return this.send({ messageType: 'coreRequest', request, data }); }
  handle(m) {
    this.emit('event', m);
    const p = m.requestId && this.pending.get(m.requestId);
    if (m.messageType === 'coreResponse' && p) { this.pending.delete(m.requestId); m.result === 'success' ? p.resolve(m.data) : p.reject(new MediaBarError(m.error.code, m.error.message)); }
    else if (m.messageType === 'resourceResponse' && p) { this.pending.delete(m.requestId); p.resolve(m.data || {}); }
    else if (m.messageType === 'resourceError' && p) { this.pending.delete(m.requestId); if (m.data) this.views.apply(m.data); p.reject(new MediaBarError(m.error.code, m.error.message, m.data, m.data && this.views.get(m.data.target))); }
    else if (m.messageType === 'resourceEvent') this.views.apply(m.event);
    else if (m.messageType === 'serviceEvent') { this.service = m.event === 'service.available' ? 'available' : 'unavailable'; this.emit('service', this.service); }
    else if (m.messageType === 'coreEvent' && m.event === 'resourceUnbound') { this.sessionId = undefined; this.views.clear(); this.emit('unbound', m.data); }
  }
  async bind(reference, opts = {}) { this.ref = reference; this.views.clear(); const d = await this.core('bindResource', { serviceId: 'WorkflowManager', resourceId: reference, takeover: !!opts.takeover }); this.sessionId = d.resourceId; return d.resourceId; }
  async unbind() { this.ref = null; await this.core('unbindResource', {}); this.sessionId = undefined; this.views.clear(); }
  execute(target, request, args = {}) { return this.send({ messageType: 'resourceRequest', serviceId: 'InteractionProcessor', resourceId: this.sessionId, request, data: { target, arguments: args } }); }
  close() { this.ws.close(); }
}
