/** A TCP port on 127.0.0.1 that is free now, below the kernel's ephemeral range. */
export function freePort(): Promise<number>;
/** The first port of the kernel's ephemeral range (Linux's ip_local_port_range; 32768 when unknown or too low). */
export function ephemeralStart(read?: () => string): number;
