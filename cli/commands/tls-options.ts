import type { Command } from 'commander';

/** --ca, --cert and --key of the commands that talk to a gateway (query, send, status, verify). */
export interface TlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
}

/** Adds --ca, --cert and --key, as curl and mosquitto_pub name them. */
export function withTlsOptions(command: Command): Command {
  return command
    .option('--ca <file>', 'PEM file of a private CA that signs the https server certificate (default: the system CAs and NODE_EXTRA_CA_CERTS)')
    .option('--cert <file>', 'PEM file of a client certificate, for a server that requires one (mutual TLS); with --key')
    .option('--key <file>', 'PEM file of the private key of --cert');
}
