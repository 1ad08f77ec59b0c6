#!/usr/bin/env node
// An fss worker in Node.js. It joins the scheduler through `fss bridge` over the gRPC
// protocol fss.v1 (fss/bridge/proto/fss/v1/fss.proto, described in docs/bridge.md) and runs
// one job, `node_echo`. To the scheduler, the CLI and the web UI it is a client like any
// Python (Celery) worker.
//
//   node worker.js --bridge 127.0.0.1:50051 [--token-file F] [--name N] [--concurrency N]
//                  [--proto FILE] [--tls-ca FILE]
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// ---- options ----------------------------------------------------------------------------

const USAGE = `usage: node worker.js --bridge HOST:PORT [--token-file F] [--name N]
                      [--concurrency N] [--proto FILE] [--tls-ca FILE]`;

// The proto ships inside the fss Python package; from a checkout it sits two levels up.
const DEFAULT_PROTO = path.resolve(__dirname, '../../fss/bridge/proto/fss/v1/fss.proto');

function parseOptions(argv) {
  const options = {
    bridge: null,
    tokenFile: null,
    name: `${os.hostname()}-node-${process.pid}`,
    concurrency: 2,
    proto: process.env.FSS_PROTO || DEFAULT_PROTO,
    tlsCa: null,
  };
  const flags = {
    '--bridge': 'bridge', '--token-file': 'tokenFile', '--name': 'name',
    '--concurrency': 'concurrency', '--proto': 'proto', '--tls-ca': 'tlsCa',
  };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '-h' || argv[i] === '--help') exitWith(0, USAGE);
    const key = flags[argv[i]];
    if (!key || i + 1 >= argv.length) exitWith(2, `${USAGE}\nbad argument: ${argv[i]}`);
    options[key] = argv[i += 1];
  }
  if (!options.bridge) exitWith(2, `${USAGE}\n--bridge is required`);
  options.concurrency = Number(options.concurrency);
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1 || options.concurrency > 1024) {
    exitWith(2, '--concurrency: an integer 1..1024');
  }
  return options;
}

function exitWith(code, message) {
  (code === 0 ? console.log : console.error)(message);
  process.exit(code);
}

function readToken(tokenFile) {
  if (!tokenFile) return null;
  try {
    return fs.readFileSync(tokenFile, 'utf8').trim();
  } catch (err) {
    return exitWith(2, `--token-file: cannot read ${tokenFile}: ${err.message}`);
  }
}

function loadBridgeService(protoFile) {
  if (!fs.existsSync(protoFile)) {
    exitWith(2, `proto not found: ${protoFile} (pass --proto FILE or set FSS_PROTO)`);
  }
  // longs as strings: task ids are int64 and must not lose digits in a JS number.
  // oneofs: every message carries `kind`, the name of the field its oneof holds.
  const definition = protoLoader.loadSync(protoFile, {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).fss.v1.Bridge;
}

// ---- logging ----------------------------------------------------------------------------

function say(level, message) {
  const line = `${new Date().toISOString()} ${level.padEnd(7)} ${message}`;
  (level === 'ERROR' || level === 'WARNING' ? console.error : console.log)(line);
}

// ---- the job ----------------------------------------------------------------------------

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});

// A failure of the job; noRetry: no retry can fix it (finished.no_retry), even when the
// group has retries left.
class JobFailed extends Error {
  constructor(message, { noRetry = false } = {}) {
    super(message);
    this.noRetry = noRetry;
  }
}

// node_echo: reads the group's data, logs at several levels, reports progress in steps,
// counts its runs in data.count and returns the changed data.
//   data.duration_ms  how long the run takes (default 400), spread over 4 progress steps
//   data.next_in_ms   run the group next this many ms after now (instead of its schedule)
//   data.fail         fail the run with an error (after logging why)
//   data.no_retry     with data.fail: refuse retries for that failure
async function nodeEcho(run) {
  const data = run.data;
  run.log('DEBUG', `node_echo starts with data ${JSON.stringify(data)}`);
  run.log('INFORMATION', `node_echo run ${run.taskId}/${run.attempt} of group ${run.groupId}`);
  if (run.shardTotal > 0) {
    // A broadcast run (group route `broadcast`): every live worker of the job runs one shard.
    run.log('INFORMATION', `shard ${run.shardIndex} of ${run.shardTotal}`);
  }
  const steps = 4;
  const stepMs = Number(data.duration_ms ?? 400) / steps;
  run.progress(0);
  for (let step = 1; step <= steps; step += 1) {
    await sleep(stepMs, run.signal);
    if (run.signal.aborted) return null; // cancelled or the stream broke: nobody listens
    run.progress((100 * step) / steps);
  }
  if (data.fail) {
    run.log('ERROR', 'data.fail is set: failing on purpose');
    throw new JobFailed(`node_echo failed on purpose (data.fail = ${JSON.stringify(data.fail)})`,
      { noRetry: Boolean(data.no_retry) });
  }
  data.count = Number(data.count ?? 0) + 1;
  run.log('WARNING', `count is now ${data.count}`);
  let nextAt = 0; // 0: the group's schedule decides
  if (data.next_in_ms !== undefined) {
    nextAt = Date.now() + Number(data.next_in_ms);
    run.log('INFORMATION', `next run at ${new Date(nextAt).toISOString()}`);
  }
  return { data, nextAt };
}

const JOBS = { node_echo: nodeEcho };

// ---- one session (one stream) -------------------------------------------------------------

// States: connecting -> registered -> (draining) -> closed. A session never reconnects;
// the Worker below starts a new one.
class Session {
  constructor(worker) {
    this.worker = worker;
    this.runs = new Map(); // "task/attempt" -> Run, the orders received and not finished
    this.closed = false;
    this.registered = false;
    this.heartbeatTimer = null;
    const metadata = new grpc.Metadata();
    if (worker.token) metadata.set('authorization', `Bearer ${worker.token}`);
    this.stream = worker.client.Connect(metadata);
    this.ended = new Promise((resolve) => { this.resolveEnded = resolve; });
    this.stream.on('data', (message) => this.onMessage(message));
    this.stream.on('error', (err) => this.onClosed(err));
    this.stream.on('end', () => this.onClosed(null));
    this.send({ register: this.registration() });
  }

  registration() {
    return {
      name: this.worker.options.name,
      host: os.hostname(),
      ip: firstIPv4(),
      pid: process.pid,
      job_names: Object.keys(JOBS),
      language: 'node',
      concurrency: this.worker.options.concurrency,
    };
  }

  send(message) {
    // After the stream ended a write would throw; the bridge has failed open runs already.
    if (this.closed) return;
    this.stream.write(message);
  }

  onMessage(message) {
    const body = message[message.kind];
    switch (message.kind) {
      case 'registered': return this.onRegistered(body);
      case 'order': return this.onOrder(body);
      case 'cancel': return this.onCancel(body);
      case 'kicked': return this.onKicked(body);
      default: return say('WARNING', `unknown server message ${message.kind}: ignored`);
    }
  }

  onRegistered(registered) {
    say('INFO', `registered as ${registered.client_id} on ${registered.bridge_node} `
      + `(heartbeat every ${registered.heartbeat_interval_ms} ms)`);
    this.registered = true;
    this.worker.connected();
    // The bridge ends a session that is silent for liveness_timeout_ms: beat at its pace.
    const interval = Math.max(100, Number(registered.heartbeat_interval_ms));
    this.heartbeatTimer = setInterval(() => this.heartbeat(), interval);
    this.heartbeat();
  }

  heartbeat() {
    this.send({ heartbeat: { accepting: !this.worker.draining } });
  }

  onOrder(order) {
    const run = new Run(this, order);
    this.runs.set(run.key, run);
    run.execute().finally(() => {
      this.runs.delete(run.key);
      this.worker.runEnded();
    });
  }

  onCancel(cancel) {
    const run = this.runs.get(`${cancel.task_id}/${cancel.attempt}`);
    say('INFO', `cancel ${cancel.task_id}/${cancel.attempt}: ${cancel.reason}`);
    if (run) run.cancel(cancel.reason);
  }

  onKicked(kicked) {
    // The stream ends right after; its status says why (see Worker.run).
    say('WARNING', `kicked: ${kicked.reason}`);
  }

  onClosed(err) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    // The bridge fails every run it streamed us and that we did not finish; the runs here
    // cannot report any more, so stop them.
    for (const run of this.runs.values()) run.abort();
    this.resolveEnded(err);
  }

  // A graceful end: half-close our side; the bridge then ends the stream.
  close() {
    if (!this.closed) this.stream.end();
    return this.ended;
  }
}

// ---- one run order ------------------------------------------------------------------------

const LEVELS = ['TRACE', 'DEBUG', 'INFORMATION', 'WARNING', 'ERROR', 'CRITICAL'];

class Run {
  constructor(session, order) {
    this.session = session;
    this.taskId = order.task_id;
    this.attempt = order.attempt;
    this.groupId = order.group_id;
    this.jobName = order.job_name;
    this.dataJson = order.data_json;
    this.deadline = Number(order.deadline_unix_ms);
    // 0 and 0 unless a broadcast run: then shard shardIndex (0..shardTotal-1) of shardTotal.
    this.shardIndex = order.shard_index;
    this.shardTotal = order.shard_total;
    this.key = `${this.taskId}/${this.attempt}`;
    this.startedAt = Date.now();
    this.controller = new AbortController();
    this.signal = this.controller.signal;
    this.cancelReason = null;
  }

  ids() {
    return { task_id: this.taskId, attempt: this.attempt };
  }

  progress(value) {
    this.session.send({ progress: { ...this.ids(), progress: Math.round(value) } });
  }

  log(level, content) {
    if (!LEVELS.includes(level)) throw new Error(`unknown log level ${level}`);
    this.session.send({ log: { ...this.ids(), level, content, at_unix_ms: Date.now() } });
  }

  cancel(reason) {
    this.cancelReason = reason || 'cancelled';
    this.controller.abort();
  }

  abort() {
    this.controller.abort();
  }

  // Exactly one `finished` per order received (unless the stream broke: then the bridge
  // has failed the run itself and nothing we send arrives).
  async execute() {
    say('INFO', `order ${this.key}: ${this.jobName} (group ${this.groupId})`);
    const job = JOBS[this.jobName];
    if (this.deadline && Date.now() > this.deadline) {
      return this.finish(false, 'the order arrived after its deadline');
    }
    if (!job) return this.finish(false, `this worker has no job named ${this.jobName}`);
    try {
      this.data = JSON.parse(this.dataJson || '{}');
    } catch (err) {
      return this.finish(false, `data_json is not JSON: ${err.message}`);
    }
    this.session.send({ started: this.ids() });
    try {
      const result = await job(this);
      if (this.cancelReason) return this.finish(false, `cancelled: ${this.cancelReason}`);
      if (this.signal.aborted) return undefined;
      return this.finish(true, '', result.nextAt, JSON.stringify(result.data));
    } catch (err) {
      if (err instanceof JobFailed) return this.finish(false, err.message, 0, '', err.noRetry);
      return this.finish(false, String(err.stack || err));
    }
  }

  // noRetry: the group's retries are not used for this failure (ignored on success).
  finish(success, error, nextAt = 0, dataJson = '', noRetry = false) {
    say(success ? 'INFO' : 'WARNING', `finished ${this.key}: ${success ? 'success' : error}`);
    this.session.send({
      finished: {
        ...this.ids(), success, error, next_at_unix_ms: nextAt, data_json: dataJson,
        no_retry: noRetry,
      },
    });
  }
}

// ---- the worker: sessions, reconnects, shutdown ---------------------------------------------

// Errors that a new attempt cannot fix: a wrong token, a registration the bridge refuses
// (INVALID_ARGUMENT before `registered`), a server that is no fss bridge. We stop instead of
// retrying forever. Anything else (UNAVAILABLE while a bridge restarts, PERMISSION_DENIED or
// RESOURCE_EXHAUSTED after a bad report) ends only this session: we reconnect.
function isFatal(err, session) {
  if (!err) return false;
  if (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.UNIMPLEMENTED) return true;
  return err.code === grpc.status.INVALID_ARGUMENT && !session.registered;
}
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 10000;
const DRAIN_TIMEOUT_MS = 15000;

class Worker {
  constructor(options) {
    this.options = options;
    this.token = readToken(options.tokenFile);
    const Bridge = loadBridgeService(options.proto);
    const credentials = options.tlsCa
      ? grpc.credentials.createSsl(fs.readFileSync(options.tlsCa))
      : grpc.credentials.createInsecure();
    this.client = new Bridge(options.bridge, credentials);
    this.backoffMs = BACKOFF_FIRST_MS;
    this.draining = false;
    this.exitCode = null;
    this.session = null;
    this.idle = null; // resolves when the last run of a draining worker ends
  }

  async run() {
    while (this.exitCode === null) {
      this.session = new Session(this);
      const err = await this.session.ended;
      if (this.exitCode !== null) break;
      if (this.draining) { // the stream ended while we shut down: nothing left to do
        this.exitCode = 0;
        break;
      }
      if (err && err.code === grpc.status.ABORTED) {
        // Kicked because another session registered under our name: coming back would kick
        // that one in turn, so leave the name to it.
        say('ERROR', `another worker took the name ${this.options.name}: ${err.details}`);
        this.exitCode = 3;
        break;
      }
      if (isFatal(err, this.session)) {
        say('ERROR', `bridge refused the session: ${grpc.status[err.code]}: ${err.details}`);
        this.exitCode = 1;
        break;
      }
      const why = err ? `${grpc.status[err.code]}: ${err.details}` : 'the bridge closed the stream';
      // Full jitter: many workers that lost the same bridge do not come back in lockstep.
      const delay = Math.round(Math.random() * this.backoffMs);
      say('WARNING', `stream ended (${why}); reconnecting in ${delay} ms`);
      this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
      await new Promise((resolve) => { this.wakeUp = resolve; setTimeout(resolve, delay); });
    }
    this.client.close();
    process.exit(this.exitCode);
  }

  connected() {
    this.backoffMs = BACKOFF_FIRST_MS;
  }

  runEnded() {
    if (this.draining && this.idle && this.session.runs.size === 0) this.idle();
  }

  // SIGINT/SIGTERM: take no new runs, let the running ones finish (failing them if they
  // take longer than DRAIN_TIMEOUT_MS), then close the stream and exit 0.
  async drain() {
    if (this.draining) {
      say('WARNING', 'second signal: exiting now');
      process.exit(1);
    }
    this.draining = true;
    say('INFO', 'signal received: shutting down');
    const session = this.session;
    if (!session || session.closed) return this.stop(0);
    session.heartbeat(); // accepting: false, at once
    say('INFO', `draining: waiting for ${session.runs.size} running order(s)`);
    if (session.runs.size > 0) {
      const timer = setTimeout(() => this.idle && this.idle(), DRAIN_TIMEOUT_MS);
      await new Promise((resolve) => { this.idle = resolve; });
      clearTimeout(timer);
      for (const run of session.runs.values()) {
        run.finish(false, 'the node worker shut down before the run ended');
        run.abort();
      }
    }
    // The bridge answers our half-close by ending the stream; run() then exits. A bridge
    // that does not is cut off after a while.
    setTimeout(() => this.stop(0), 5000).unref();
    return session.close();
  }

  stop(code) {
    this.exitCode = code;
    if (this.session && !this.session.closed) this.session.stream.cancel();
    if (this.wakeUp) this.wakeUp();
  }
}

function firstIPv4() {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses || []) {
      if (address.family === 'IPv4' && !address.internal) return address.address;
    }
  }
  return '127.0.0.1';
}

function main() {
  const worker = new Worker(parseOptions(process.argv.slice(2)));
  process.on('SIGINT', () => worker.drain());
  process.on('SIGTERM', () => worker.drain());
  say('INFO', `connecting to ${worker.options.bridge} as ${worker.options.name}`);
  worker.run();
}

main();
