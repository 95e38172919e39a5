// nodeapp of Dapr's hello-world quickstart, with Node's standard library only (no npm
// install): POST /neworder keeps the order in the state store through the sidecar, and
// GET /order returns the latest one from there, so the app itself holds no state.
'use strict';

const http = require('node:http');

const daprPort = process.env.DAPR_HTTP_PORT || 3500;
const stateStoreName = 'statestore';
const stateUrl = `http://localhost:${daprPort}/v1.0/state/${stateStoreName}`;
const port = process.env.APP_PORT;
if (!port) {
    console.error('[error]: --app-port is not set. Re-run outrigger run with -p or --app-port.');
    process.exit(1);
}

function send(res, status, body) {
    if (body === undefined) {
        res.writeHead(status);
        res.end();
        return;
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json' });
    res.end(text);
}

function readJSON(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            try {
                resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
            } catch (e) {
                reject(e);
            }
        });
        req.on('error', reject);
    });
}

async function getOrder(_req, res) {
    try {
        // fetch is built into Node 18 and later.
        const response = await fetch(`${stateUrl}/order`);
        if (!response.ok) {
            throw 'Could not get state.';
        }
        send(res, 200, await response.text());
    } catch (error) {
        console.log(error);
        send(res, 500, { message: String(error) });
    }
}

async function newOrder(req, res) {
    let data;
    try {
        data = (await readJSON(req)).data;
    } catch (e) {
        send(res, 400, { message: `The body is not JSON: ${e.message}` });
        return;
    }
    if (!data || data.orderId === undefined) {
        send(res, 400, { message: 'The body must be {"data":{"orderId":...}}' });
        return;
    }
    const orderId = data.orderId;
    console.log('Got a new order! Order ID: ' + orderId);

    const state = [{
        key: 'order',
        value: data,
    }];

    try {
        const response = await fetch(stateUrl, {
            method: 'POST',
            body: JSON.stringify(state),
            headers: {
                'Content-Type': 'application/json',
            },
        });
        if (!response.ok) {
            throw 'Failed to persist state.';
        }
        console.log('Successfully persisted state.');
        send(res, 200);
    } catch (error) {
        console.log(error);
        send(res, 500, { message: String(error) });
    }
}

// Beyond Dapr's quickstart: a Subscription may route a topic to POST /events. The app
// logs each event and keeps the last 100, which GET /events lists (the e2e test applies
// such a Subscription while the app runs).
const events = [];

async function newEvent(req, res) {
    let event;
    try {
        event = await readJSON(req);
    } catch (e) {
        send(res, 400, { message: `The body is not JSON: ${e.message}` });
        return;
    }
    console.log(`Got an event on topic ${event.topic}: ${JSON.stringify(event.data)}`);
    events.push(event);
    if (events.length > 100) {
        events.shift();
    }
    send(res, 200, { status: 'SUCCESS' });
}

const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    if (req.method === 'GET' && path === '/order') {
        getOrder(req, res);
    } else if (req.method === 'POST' && path === '/neworder') {
        newOrder(req, res);
    } else if (req.method === 'POST' && path === '/events') {
        newEvent(req, res);
    } else if (req.method === 'GET' && path === '/events') {
        send(res, 200, events);
    } else {
        send(res, 404, { message: `No route for ${req.method} ${path}` });
    }
});

server.listen(port, () => console.log(`Node App listening on port ${port}!`));

// outrigger run and stop send SIGTERM: finish the calls in flight, then exit cleanly.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
