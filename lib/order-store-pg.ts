import { and, asc, desc, eq, gt, inArray, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as pg from "./db/shard-schema-pg";
import { delayIfFaulted, failIfFaulted } from "./faults";
import type { OrderMessage, OrderRefundedMessage } from "./order";
import { type OrderStore, orderColumns, type StoredOrderRow, ticketColumns, toView } from "./order-rows";

/**
 * PostgreSQL order shard: the same logical schema as the D1 shards (migrations/pg), one transaction per
 * order, idempotent by primary keys (`ON CONFLICT DO NOTHING`). In production the connection string comes
 * from a Hyperdrive binding (pooled, close to the database); locally from PG_SHARD_URLS.
 */
export class PgOrderStore implements OrderStore {
  private readonly db;

  constructor(
    readonly name: string,
    readonly client: postgres.Sql,
  ) {
    this.db = drizzle(client, { schema: pg });
  }

  /** A store on `url` with a small connection pool (Workers: one connection per request is typical). */
  static connect(name: string, url: string, max = 1): PgOrderStore {
    return new PgOrderStore(name, postgres(url, { max, fetch_types: false, prepare: false, onnotice: () => {} }));
  }

  async saveOrder(msg: OrderMessage): Promise<"inserted" | "exists"> {
    const [result] = await this.saveOrders([msg]);
    return result ?? "exists";
  }

  /** All of `msgs` in one transaction. */
  async saveOrders(msgs: readonly OrderMessage[]): Promise<("inserted" | "exists")[]> {
    await delayIfFaulted("shard_slow", this.name);
    failIfFaulted("shard_writes", `shard ${this.name} write failed`);
    const now = new Date().toISOString();
    return this.db.transaction(async (tx) => {
      const out: ("inserted" | "exists")[] = [];
      for (const msg of msgs) {
        const inserted = await tx.insert(pg.orders).values(orderColumns(msg, now)).onConflictDoNothing().returning({ id: pg.orders.id });
        // One statement: Postgres binds up to 65,535 parameters (D1's limit of 100 does not apply here).
        await tx.insert(pg.tickets).values(ticketColumns(msg)).onConflictDoNothing();
        out.push(inserted.length ? "inserted" : "exists");
      }
      return out;
    });
  }

  async getOrder(orderId: string): Promise<StoredOrderRow | null> {
    return (await this.withTickets(await this.db.select().from(pg.orders).where(eq(pg.orders.id, orderId))))[0] ?? null;
  }

  async listOrders(userId: string, limit: number): Promise<StoredOrderRow[]> {
    return this.withTickets(
      await this.db.select().from(pg.orders).where(eq(pg.orders.userId, userId)).orderBy(desc(pg.orders.paidAt)).limit(limit),
    );
  }

  async orderIdsForEvent(eventId: string): Promise<{ id: string; rows: number }[]> {
    const rows = await this.db
      .select({ id: pg.orders.id, rows: sql<number>`count(*)::int` })
      .from(pg.orders)
      .where(eq(pg.orders.eventId, eventId))
      .groupBy(pg.orders.id);
    return rows;
  }

  async countOrders(): Promise<number> {
    const [row] = await this.db.select({ n: sql<number>`count(*)::int` }).from(pg.orders);
    return Number(row?.n ?? 0);
  }

  async allOrderIds(page: { after?: string; limit?: number } = {}): Promise<string[]> {
    const q = this.db
      .select({ id: pg.orders.id })
      .from(pg.orders)
      .where(page.after === undefined ? undefined : gt(pg.orders.id, page.after))
      .orderBy(asc(pg.orders.id));
    const rows = await (page.limit === undefined ? q : q.limit(page.limit));
    return rows.map((r) => r.id);
  }

  async applyRefund(msg: OrderRefundedMessage): Promise<"applied" | "missing"> {
    failIfFaulted("shard_writes", `shard ${this.name} write failed`);
    return this.db.transaction(async (tx) => {
      await tx
        .update(pg.tickets)
        .set({ status: "void" })
        .where(and(eq(pg.tickets.orderId, msg.orderId), inArray(pg.tickets.id, msg.tickets)));
      const found = await tx.select({ id: pg.orders.id }).from(pg.orders).where(eq(pg.orders.id, msg.orderId));
      return found.length ? "applied" : "missing";
    });
  }

  async recordMail(mail: { orderId: string; userId: string; subject: string; body: string }): Promise<"sent" | "already_sent"> {
    const [result] = await this.recordMails([mail]);
    return result ?? "already_sent";
  }

  /** One statement for all of them. */
  async recordMails(
    mails: readonly { orderId: string; userId: string; subject: string; body: string }[],
  ): Promise<("sent" | "already_sent")[]> {
    if (!mails.length) return [];
    const now = new Date().toISOString();
    const rows = await this.db
      .insert(pg.mailOutbox)
      .values(mails.map((m) => ({ ...m, createdAt: now, sentAt: now })))
      .onConflictDoNothing()
      .returning({ id: pg.mailOutbox.orderId });
    const inserted = new Set(rows.map((r) => r.id));
    return mails.map((m) => (inserted.has(m.orderId) ? "sent" : "already_sent"));
  }

  /**
   * Releases the store. On workerd this deliberately does not call `sql.end()`: postgres.js's socket
   * polyfill then raises an unhandled "socket has been closed" after the fact, while the runtime closes the
   * invocation's sockets itself when it ends (and Hyperdrive pools the real connections). Node callers
   * that own a long-lived client can end it through `client`.
   */
  async close(): Promise<void> {}

  private async withTickets(rows: (typeof pg.orders.$inferSelect)[]): Promise<StoredOrderRow[]> {
    if (!rows.length) return [];
    const tickets = await this.db
      .select()
      .from(pg.tickets)
      .where(
        inArray(
          pg.tickets.orderId,
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
