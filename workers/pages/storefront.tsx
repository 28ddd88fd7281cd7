/** @jsxImportSource hono/jsx */
import type { EventDoc, EventSummary, Section } from "../../lib/event-schema";
import { Layout, money, when } from "./layout";

/** `/`: the upcoming events. */
export function EventListPage({ events }: { events: EventSummary[] }) {
  return (
    <Layout title="Upcoming events" area="buyer">
      <h1>Upcoming events</h1>
      {events.length === 0 ? (
        <p>No events on sale yet.</p>
      ) : (
        <ul class="cards">
          {events.map((e) => (
            <li class="card">
              <h2>
                <a href={`/events/${e.id}`}>{e.name}</a>
              </h2>
              <p class="muted">
                {e.venue} · <time datetime={e.startsAt}>{when(e.startsAt)}</time>
              </p>
              <p>
                {e.soldOut ? <span class="badge sold">Sold out</span> : <>From {money(e.minPrice, e.currency)}</>}
                {" · "}sale opens <time datetime={e.saleStartsAt}>{when(e.saleStartsAt)}</time>
              </p>
            </li>
          ))}
        </ul>
      )}
    </Layout>
  );
}

/** Where a section's link goes: through the queue when the event has a waiting room. */
const sectionHref = (event: EventDoc, s: Section) =>
  event.waitingRoom.enabled ? `/events/${event.id}/queue?section=${s.id}` : `/events/${event.id}/sections/${s.id}`;

/** `/events/:id`: sections, prices and (filled in by event.js) live availability. */
export function EventPage({ event }: { event: EventDoc }) {
  return (
    <Layout title={event.name} area="buyer" scripts={["event.js"]} data={{ "event-id": event.id }}>
      <h1>{event.name}</h1>
      <p class="muted">
        {event.venue} · <time datetime={event.startsAt}>{when(event.startsAt)}</time>
      </p>
      <p>
        Sale opens <time datetime={event.saleStartsAt}>{when(event.saleStartsAt)}</time>. Up to {event.perCustomerLimit} tickets per buyer;
        a hold keeps your places for {Math.round(event.holdSeconds / 60)} minutes.
        {event.waitingRoom.enabled ? " This sale has a waiting room: choosing a section gives you a place in the queue." : ""}
      </p>
      {event.status === "cancelled" ? (
        <p class="notice" role="status">
          This event was cancelled by its organizer. Nothing is on sale; every order is refunded to the card that paid it.
        </p>
      ) : null}
      <table class="sections responsive">
        <caption>Sections</caption>
        <thead>
          <tr>
            <th scope="col">Section</th>
            <th scope="col">Price</th>
            <th scope="col">Available</th>
            <th scope="col">
              <span class="sr-only">Action</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {event.sections.map((s) => (
            <tr data-section={s.id}>
              <th scope="row">
                {s.name}
                <span class="muted"> · {s.kind === "seated" ? `${s.capacity} seats` : "standing"}</span>
              </th>
              <td>{money(s.price, event.currency)}</td>
              <td>
                <span class="avail" data-avail={s.id}>
                  …
                </span>
                <span class="meter" aria-hidden="true">
                  <span class="meter-fill" data-meter={s.id} />
                </span>
              </td>
              <td>
                {event.status === "cancelled" ? (
                  <span class="badge sold">Cancelled</span>
                ) : (
                  <a class="button" href={sectionHref(event, s)}>
                    {s.kind === "seated" ? "Choose seats" : "Choose tickets"}
                    <span class="sr-only"> in {s.name}</span>
                  </a>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted small" id="asof" aria-live="off" />
    </Layout>
  );
}

/** `/events/:id/queue`: the waiting room (queue.js joins, polls and keeps the place across reloads). */
export function QueuePage({ event }: { event: EventDoc }) {
  return (
    <Layout
      title={`Queue · ${event.name}`}
      area="buyer"
      scripts={["queue.js"]}
      data={{ "event-id": event.id, "sale-starts-at": event.saleStartsAt, "first-section": event.sections[0]?.id ?? "" }}
    >
      <h1>You are in the queue for {event.name}</h1>
      <p id="queue-intro">
        Keep this page open: it checks your place by itself. Reloading keeps your place. When it is your turn you go straight to the seats.
      </p>
      <section class="queue" aria-labelledby="queue-status">
        <h2 id="queue-status" aria-live="polite">
          Joining the queue…
        </h2>
        <div
          class="progress"
          role="progressbar"
          id="queue-progress"
          aria-label="Progress through the queue"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={0}
        >
          <div class="progress-fill" id="queue-fill" />
        </div>
        <dl class="figures">
          <div>
            <dt>People ahead of you</dt>
            <dd id="queue-position">–</dd>
          </div>
          <div>
            <dt>Estimated wait</dt>
            <dd id="queue-wait">–</dd>
          </div>
          <div>
            <dt>Sale opens</dt>
            <dd>
              <time datetime={event.saleStartsAt} id="queue-opens">
                {when(event.saleStartsAt)}
              </time>
            </dd>
          </div>
        </dl>
        <p class="muted small" id="queue-note">
          Everyone who joins before the sale opens gets a random place at the opening; after that, first come, first served.
        </p>
        <p class="error" id="queue-error" role="alert" />
      </section>
    </Layout>
  );
}

/** The seat buttons of a seated section, drawn from the event document (seats.js marks held and sold). */
function SeatMap({ section }: { section: Section }) {
  return (
    <div class="seatmap-wrap">
      <p id="seat-help" class="muted small">
        Use Tab to reach the map, the arrow keys to move between seats, Space or Enter to pick one. Sold and held seats cannot be picked.
      </p>
      <div class="stage" aria-hidden="true">
        Stage
      </div>
      <fieldset class="seatmap" aria-describedby="seat-help" id="seatmap">
        <legend class="sr-only">Seats in {section.name}</legend>
        {(section.rows ?? []).map((r, ri) => (
          <div class="seat-row" data-row-index={ri}>
            <span class="row-label" aria-hidden="true">
              {r.id}
            </span>
            {Array.from({ length: r.seats }, (_, i) => (
              <button
                type="button"
                class="seat"
                data-seat={`${r.id}-${i + 1}`}
                data-row={r.id}
                data-number={i + 1}
                aria-pressed="false"
                aria-label={`Row ${r.id}, seat ${i + 1}`}
                tabindex={ri === 0 && i === 0 ? 0 : -1}
              >
                {i + 1}
              </button>
            ))}
          </div>
        ))}
      </fieldset>
      <ul class="legend" aria-label="Legend">
        <li>
          <span class="seat demo" aria-hidden="true" /> available
        </li>
        <li>
          <span class="seat demo picked" aria-hidden="true" /> your pick
        </li>
        <li>
          <span class="seat demo held" aria-hidden="true" /> held
        </li>
        <li>
          <span class="seat demo sold" aria-hidden="true" /> sold
        </li>
      </ul>
    </div>
  );
}

/** `/events/:id/sections/:sectionId`: the seat map or the quantity picker, then the hold. */
export function SectionPage({ event, section }: { event: EventDoc; section: Section }) {
  return (
    <Layout
      title={`${section.name} · ${event.name}`}
      area="buyer"
      scripts={["seats.js"]}
      data={{
        "event-id": event.id,
        "section-id": section.id,
        kind: section.kind,
        price: section.price,
        currency: event.currency,
        limit: event.perCustomerLimit,
        "waiting-room": event.waitingRoom.enabled,
      }}
    >
      <p class="crumbs">
        <a href={`/events/${event.id}`}>{event.name}</a>
      </p>
      <h1>{section.name}</h1>
      <p>
        {money(section.price, event.currency)} each · up to {event.perCustomerLimit} per buyer ·{" "}
        <span id="section-avail" aria-live="off">
          …
        </span>
      </p>
      <form id="hold-form" class="panel" novalidate>
        {section.kind === "seated" ? (
          <SeatMap section={section} />
        ) : (
          <div class="field">
            <label for="quantity">Tickets</label>
            <input
              id="quantity"
              name="quantity"
              type="number"
              inputmode="numeric"
              min={1}
              max={event.perCustomerLimit}
              value="1"
              required
            />
          </div>
        )}
        <p id="hold-summary" aria-live="polite">
          {section.kind === "seated" ? "No seats picked yet." : ""}
        </p>
        <button type="submit" class="primary" id="hold-button">
          {section.kind === "seated" ? "Hold these seats" : "Hold tickets"}
        </button>
        <p class="error" id="hold-error" role="alert" />
      </form>
    </Layout>
  );
}

/** What the checkout page offers: cards through Stripe.js (its publishable key) and/or the sandbox's test cards. */
export interface CheckoutOptions {
  /** Stripe's publishable key when card payments are configured, else null. */
  cardKey: string | null;
  /** Offer the sandbox's test cards (locally, or when cards are not configured). */
  sandbox: boolean;
}

/**
 * `/checkout/:holdId`: the hold, its countdown and payment (checkout.js). With card payments configured
 * the page carries Stripe's publishable key (public) in `data-stripe-key` and checkout.js mounts Stripe's
 * Card Element; the sandbox's test cards stay beside it locally.
 */
export function CheckoutPage({ cardKey, sandbox }: CheckoutOptions) {
  const card = cardKey !== null;
  return (
    <Layout title="Checkout" area="buyer" scripts={["checkout.js"]} data={card ? { "stripe-key": cardKey } : {}}>
      <h1>Checkout</h1>
      <section class="panel" aria-labelledby="hold-title">
        <h2 id="hold-title">Your hold</h2>
        <p id="hold-desc">Loading your hold…</p>
        <p class="countdown">
          Held for you for <strong id="countdown">–:––</strong>
          <span class="sr-only" id="countdown-sr" aria-live="polite" />
        </p>
        <div class="progress thin" aria-hidden="true">
          <div class="progress-fill" id="countdown-fill" />
        </div>
      </section>
      <form id="pay-form" class="panel" novalidate>
        <fieldset>
          <legend>Payment</legend>
          {card && sandbox ? (
            <label class="radio">
              <input type="radio" name="token" value="card" checked /> Card
            </label>
          ) : null}
          {card ? (
            <fieldset class="card-field" id="card-field">
              <legend>Card details</legend>
              <div id="card-element" class="card-input">
                <span class="muted small">Loading the card form…</span>
              </div>
              <p class="field-error" id="card-error" role="alert" />
              <p class="muted small">Card details go straight to Stripe; Breakwater never sees them.</p>
            </fieldset>
          ) : null}
          {sandbox ? (
            <>
              <p class="muted small">
                {card
                  ? "Or a sandbox test card (local only, no money moves):"
                  : "Sandbox payments (no money moves). Pick how the test card behaves:"}
              </p>
              <label class="radio">
                <input type="radio" name="token" value="tok_ok" checked={!card} /> Test card: approved
              </label>
              <label class="radio">
                <input type="radio" name="token" value="tok_decline" /> Test card: declined
              </label>
              <label class="radio">
                <input type="radio" name="token" value="tok_slow" /> Test card: slow (about 2 s)
              </label>
            </>
          ) : null}
        </fieldset>
        <button type="submit" class="primary" id="pay-button">
          Pay
        </button>
        <button type="button" id="release-button" class="link">
          Release these places
        </button>
        <p class="error" id="pay-error" role="alert" />
        <p class="muted" id="pay-status" aria-live="polite" />
      </form>
    </Layout>
  );
}

/** `/orders/:id`: the confirmation with the tickets (order.js). */
export function OrderPage() {
  return (
    <Layout title="Your tickets" area="buyer" scripts={["order.js"]}>
      <h1 id="order-title">Your tickets</h1>
      <p id="order-desc" aria-live="polite">
        Loading your order…
      </p>
      <ul class="tickets" id="tickets" />
      <p>
        <a href="/orders">All my orders</a>
      </p>
    </Layout>
  );
}

/** `/orders`: the buyer's orders (orders.js). */
export function OrdersPage() {
  return (
    <Layout title="My orders" area="buyer" scripts={["orders.js"]}>
      <h1>My orders</h1>
      <p class="muted small">Orders reach this list through the order queue, usually within seconds of paying.</p>
      <p id="orders-status" aria-live="polite">
        Loading…
      </p>
      <ul class="cards" id="orders" />
    </Layout>
  );
}

/** `/signin`: a dev token locally; in production the embedding site hands its JWT over (README). */
export function SignInPage({ devAuth }: { devAuth: boolean }) {
  return (
    <Layout title="Sign in" area="buyer" scripts={["signin.js"]} data={{ "dev-auth": devAuth }}>
      <h1>Sign in</h1>
      {devAuth ? (
        <form id="signin-form" class="panel" novalidate>
          <p class="muted small">Local development: this asks the server for a dev token (DEV_AUTH is on).</p>
          <div class="field">
            <label for="signin-name">Your name</label>
            <input id="signin-name" name="sub" autocomplete="username" required maxlength={64} />
          </div>
          <fieldset>
            <legend>Sign in as</legend>
            <label class="radio">
              <input type="radio" name="role" value="buyer" checked /> Buyer
            </label>
            <label class="radio">
              <input type="radio" name="role" value="organizer" /> Organizer
            </label>
          </fieldset>
          <button type="submit" class="primary">
            Sign in
          </button>
          <p class="error" id="signin-error" role="alert" />
        </form>
      ) : (
        <p>
          Sign in on the site that sells these tickets: it opens Breakwater with your session (a signed token in the link), and you are
          signed in here.
        </p>
      )}
    </Layout>
  );
}

/** 404 page for unknown events and sections. */
export function NotFoundPage({ what }: { what: string }) {
  return (
    <Layout title="Not found" area="buyer">
      <h1>Not found</h1>
      <p>{what}</p>
      <p>
        <a href="/">See the upcoming events</a>
      </p>
    </Layout>
  );
}
