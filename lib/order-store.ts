import { and, asc, desc, eq, gt, inArray, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { chunk } from "./chunk";
import { config } from "./config";
import { countingD1 } from "./d1-counter";
import { insertJsonRows } from "./d1-json-rows";
import * as d1 from "./db/shard-schema";
import { delayIfFaulted, failIfFaulted } from "./faults";
import type { OrderMessage, OrderRefundedMessage } from "./order";
import { type OrderStore, orderColumns, type StoredOrderRow, ticketColumns, toView } from "./order-rows";
import { PgOrderStore } from "./order-store-pg";

/**
 * Order storage on a shard, one logical schema with two backends: D1 (default) and PostgreSQL
 * (Hyperdrive in production, a connection string locally). Every write is idempotent, because queue
 * delivery is at least once: a replayed message changes nothing.
 */

// ───────────────────────────── D1 ─────────────────────────────

/** Orders written per D1 `batch()` by {@link D1OrderStore.saveOrders} (each statement's JSON stays below D1's 2 MB a value: at most 50 tickets an order). */
const ORDERS_PER_D1_BATCH = 50;

const { orders: o, tickets: t, mailOutbox: m } = d1;
/** The rows of `orderColumns`; answers the ids it inserted. */
const INSERT_ORDERS = `${insertJsonRows(
  o,
  [
    "id",
    "userId",
    "eventId",
    "sectionId",
    "holdId",
    "seats",
    "quantity",
    "total",
    "currency",
    "paidAt",
    "paymentProvider",
    "chargeId",
    "traceId",
    "storedAt",
  ],
  new Set(["seats"]),
)} RETURNING "${o.id.name}" AS id`;
/** The rows of `ticketColumns`. */
const INSERT_TICKETS = insertJsonRows(t, ["id", "orderId", "seat", "code"]);
/** Mail outbox rows; answers the order ids it inserted. */
const INSERT_MAILS = `${insertJsonRows(m, ["orderId", "userId", "subject", "body", "createdAt", "sentAt"])} RETURNING "${m.orderId.name}" AS id`;

/** D1 shard: orders and their tickets written together, one `batch()` (a transaction) per {@link ORDERS_PER_D1_BATCH}. */
export class D1OrderStore implements OrderStore {
  private readonly db;
  /** The binding itself, for the statements drizzle cannot batch ({@link insertJsonRows}). */
  private readonly d1: D1Database;
  constructor(
    readonly name: string,
    binding: D1Database,
  ) {
    this.d1 = countingD1(binding, name);
    this.db = drizzle(this.d1, { schema: d1 });
  }

  async saveOrder(msg: OrderMessage): Promise<"inserted" | "exists"> {
    const [result] = await this.saveOrders([msg]);
    return result ?? "exists";
  }

  /**
   * One `batch()` (one round trip, one transaction) per {@link ORDERS_PER_D1_BATCH} orders, of two
   * statements ({@link insertJsonRows}): the order rows (their `RETURNING` names the ones that were new),
   * then the tickets. An order given twice is `inserted` at most once.
   */
  async saveOrders(msgs: readonly OrderMessage[]): Promise<("inserted" | "exists")[]> {
    await delayIfFaulted("shard_slow", this.name);
    failIfFaulted("shard_writes", `shard ${this.name} write failed`);
    const now = new Date().toISOString();
    const out: ("inserted" | "exists")[] = [];
    for (const part of chunk([...msgs], ORDERS_PER_D1_BATCH)) {
      const [newOrders] = await this.d1.batch<{ id: string }>([
        this.d1.prepare(INSERT_ORDERS).bind(JSON.stringify(part.map((msg) => orderColumns(msg, now)))),
        this.d1.prepare(INSERT_TICKETS).bind(JSON.stringify(part.flatMap(ticketColumns))),
      ]);
      const inserted = new Set(newOrders?.results.map((r) => r.id));
      for (const msg of part) {
        out.push(inserted.delete(msg.orderId) ? "inserted" : "exists");
      }
    }
    return out;
  }

  async getOrder(orderId: string): Promise<StoredOrderRow | null> {
    const rows = await this.withTickets(await this.db.select().from(d1.orders).where(eq(d1.orders.id, orderId)));
    return rows[0] ?? null;
  }

  async listOrders(userId: string, limit: number): Promise<StoredOrderRow[]> {
    return this.withTickets(
      await this.db.select().from(d1.orders).where(eq(d1.orders.userId, userId)).orderBy(desc(d1.orders.paidAt)).limit(limit),
    );
  }

  async orderIdsForEvent(eventId: string): Promise<{ id: string; rows: number }[]> {
    return this.db
      .select({ id: d1.orders.id, rows: sql<number>`count(*)` })
      .from(d1.orders)
      .where(eq(d1.orders.eventId, eventId))
      .groupBy(d1.orders.id);
  }

  async countOrders(): Promise<number> {
    const [row] = await this.db.select({ n: sql<number>`count(*)` }).from(d1.orders);
    return Number(row?.n ?? 0);
  }

  async allOrderIds(page: { after?: string; limit?: number } = {}): Promise<string[]> {
    const q = this.db
      .select({ id: d1.orders.id })
      .from(d1.orders)
      .where(page.after === undefined ? undefined : gt(d1.orders.id, page.after))
      .orderBy(asc(d1.orders.id));
    const rows = await (page.limit === undefined ? q : q.limit(page.limit));
    return rows.map((r) => r.id);
  }

  async applyRefund(msg: OrderRefundedMessage): Promise<"applied" | "missing"> {
    failIfFaulted("shard_writes", `shard ${this.name} write failed`);
    const [, found] = await this.db.batch([
      this.db
        .update(d1.tickets)
        .set({ status: "void" })
        .where(and(eq(d1.tickets.orderId, msg.orderId), inArray(d1.tickets.id, msg.tickets))),
      this.db.select({ id: d1.orders.id }).from(d1.orders).where(eq(d1.orders.id, msg.orderId)),
    ]);
    return found.length ? "applied" : "missing";
  }

  async recordMail(mail: { orderId: string; userId: string; subject: string; body: string }): Promise<"sent" | "already_sent"> {
    const [result] = await this.recordMails([mail]);
    return result ?? "already_sent";
  }

  /** One statement for all of them ({@link insertJsonRows}). */
  async recordMails(
    mails: readonly { orderId: string; userId: string; subject: string; body: string }[],
  ): Promise<("sent" | "already_sent")[]> {
    if (!mails.length) return [];
    const now = new Date().toISOString();
    const rows = mails.map((mail) => ({ ...mail, createdAt: now, sentAt: now }));
    const { results } = await this.d1.prepare(INSERT_MAILS).bind(JSON.stringify(rows)).all<{ id: string }>();
    const inserted = new Set(results.map((r) => r.id));
    return mails.map((mail) => (inserted.has(mail.orderId) ? "sent" : "already_sent"));
  }

  private async withTickets(rows: d1.OrderRow[]): Promise<StoredOrderRow[]> {
    if (!rows.length) return [];
    const tickets = await this.db
      .select()
      .from(d1.tickets)
      .where(
        inArray(
          d1.tickets.orderId,
          rows.map((r) => r.id),
        ),
      );
    return rows.map((r) =>
      toView(
        r,
        tickets.filter((t) => t.orderId === r.id).sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true })),
      ),
    );
  }
}

// ───────────────────────────── selection ─────────────────────────────

/** Store factories for the configured backend, keyed by shard name. */
export type StoreResolver = (shard: string) => OrderStore;

/**
 * The stores of the configured backend (`SHARD_BACKEND`): D1 bindings named by ORDER_SHARDS (default), or
 * PostgreSQL — a Hyperdrive binding of the shard's name when there is one (production), else the
 * connection string at the same position in PG_SHARD_URLS (local). An unknown backend name throws rather
 * than quietly writing orders somewhere the operator does not look. Postgres connections opened through
 * the resolver are released by `close()` after the request or batch.
 */
export function orderStores(env: object): StoreResolver & { close: () => Promise<void> } {
  const cfg = config(env);
  if (cfg.SHARD_BACKEND === "d1") return Object.assign(d1Stores(env), { close: async () => {} });
  const names = cfg.ORDER_SHARDS;
  const urls = cfg.PG_SHARD_URLS;
  const open = new Map<string, PgOrderStore>();
  const resolve = (shard: string): OrderStore => {
    let store = open.get(shard);
    if (!store) {
      const hyperdrive = (env as unknown as Record<string, Partial<Hyperdrive> | undefined>)[shard]?.connectionString;
      const url = typeof hyperdrive === "string" ? hyperdrive : urls[names.indexOf(shard)];
      if (!url) throw new Error(`no Postgres connection for shard ${shard} (a Hyperdrive binding or PG_SHARD_URLS)`);
      store = PgOrderStore.connect(shard, url);
      open.set(shard, store);
    }
    return store;
  };
  return Object.assign(resolve, { close: async () => void (await Promise.all([...open.values()].map((s) => s.close()))) });
}

/** The configured shard names (`ORDER_SHARDS`). */
export const shardNames = (env: object): string[] => config(env).ORDER_SHARDS;

const d1StoreCache = new WeakMap<D1Database, D1OrderStore>();
/** D1 stores: each shard name is a D1 binding in `env` (one store per binding, cached per isolate). */
export function d1Stores(env: object): StoreResolver {
  return (shard) => {
    const binding = (env as unknown as Record<string, D1Database | undefined>)[shard];
    if (!binding || typeof (binding as D1Database).prepare !== "function")
      throw new Error(`ORDER_SHARDS names ${shard}, which is not a D1 binding`);
    let store = d1StoreCache.get(binding);
    if (!store) {
      store = new D1OrderStore(shard, binding);
      d1StoreCache.set(binding, store);
    }
    return store;
  };
}
