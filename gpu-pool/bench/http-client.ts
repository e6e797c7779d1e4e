/**
 * The bench tools' HTTP client by the address's scheme: a deployed Worker is
 * https, and so may be a pool behind TLS; a local one is http. On node:http
 * rather than fetch, for keep-alive agents the tools size themselves.
 */
import http from 'node:http';
import https from 'node:https';

const isHttps = (url: string): boolean => url.startsWith('https:');

/** A keep-alive agent, as many sockets as requests in flight, for addresses like `url`. */
export function keepAliveAgent(url: string): http.Agent {
  return isHttps(url) ? new https.Agent({ keepAlive: true, maxSockets: Infinity }) : new http.Agent({ keepAlive: true, maxSockets: Infinity });
}

const shared: { http?: http.Agent; https?: http.Agent } = {};

/** One keep-alive agent per scheme for the whole process (a benchmark's generations share their connections). */
export function sharedAgent(url: string): http.Agent {
  const scheme = isHttps(url) ? 'https' : 'http';
  return (shared[scheme] ??= keepAliveAgent(url));
}

/** http.request or https.request, as `url` says. Throws as they do on a URL neither takes. */
export function requestTo(url: string, options: http.RequestOptions): http.ClientRequest {
  return (isHttps(url) ? https : http).request(url, options);
}
