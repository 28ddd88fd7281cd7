/** @jsxImportSource hono/jsx */
import type { EventDoc } from "../../lib/event-schema";
import { Layout, money, when } from "./layout";

/** A labelled input with the slot where the API's validation error for `path` appears. */
function Field(props: {
  path: string;
  label: string;
  type?: string;
  value?: string | number;
  hint?: string;
  min?: number;
  max?: number;
  step?: number | string;
  required?: boolean;
}) {
  const id = `f-${props.path.replace(/\./g, "-")}`;
  const described = [props.hint ? `${id}-hint` : "", `${id}-error`].filter(Boolean).join(" ");
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.path}
        data-path={props.path}
        type={props.type ?? "text"}
        value={props.value === undefined ? undefined : String(props.value)}
        min={props.min}
        max={props.max}
        step={props.step}
        required={props.required}
        aria-describedby={described}
      />
      {props.hint ? (
        <p class="muted small" id={`${id}-hint`}>
          {props.hint}
        </p>
      ) : null}
      <p class="field-error" id={`${id}-error`} data-error-for={props.path} />
    </div>
  );
}

/**
 * `/organizer`: create an event (organizer.js sends the form as the API's JSON and shows each validation
 * error next to its field), and the events created from this browser.
 */
export function ConsolePage() {
  return (
    <Layout title="Organizer console" area="organizer" scripts={["organizer.js"]}>
      <h1>Organizer console</h1>
      <section aria-labelledby="my-events">
        <h2 id="my-events">Your events</h2>
        <ul id="event-list" class="cards" />
        <p id="event-list-empty" class="muted">
          Events you create from this browser appear here.
        </p>
      </section>
      <form id="create-form" class="panel" novalidate>
        <h2>Create an event</h2>
        <p class="error" id="form-error" role="alert" data-error-for="(root)" />
        <div class="grid2">
          <Field path="name" label="Name" required />
          <Field path="venue" label="Venue" required />
          <Field path="startsAt" label="Starts at (your time)" type="datetime-local" step={1} required />
          <Field path="saleStartsAt" label="Sale opens at (your time)" type="datetime-local" step={1} required />
          <Field path="currency" label="Currency" value="EUR" hint="ISO 4217, e.g. EUR" required />
          <Field path="perCustomerLimit" label="Tickets per buyer" type="number" value={4} min={1} max={50} required />
          <Field path="holdSeconds" label="Hold time (seconds)" type="number" value={600} min={30} max={3600} />
        </div>
        <fieldset>
          <legend>Waiting room</legend>
          <label class="radio">
            <input type="checkbox" id="f-waitingRoom-enabled" name="waitingRoom.enabled" data-path="waitingRoom.enabled" /> Use a waiting
            room
          </label>
          <Field
            path="waitingRoom.admitPerMinute"
            label="Admit at most (buyers per minute)"
            type="number"
            value={6000}
            min={1}
            hint="The room adapts below this ceiling to the inventory's health."
          />
        </fieldset>
        <fieldset>
          <legend>Sections</legend>
          <p class="field-error" data-error-for="sections" />
          <div id="sections" />
          <div class="row-buttons">
            <button type="button" id="add-seated">
              Add a seated section
            </button>
            <button type="button" id="add-ga">
              Add a standing (GA) section
            </button>
          </div>
        </fieldset>
        <button type="submit" class="primary" id="create-button">
          Create event
        </button>
        <p id="create-status" aria-live="polite" />
      </form>
      <template id="seated-template">
        <fieldset class="section-box" data-kind="seated">
          <legend>Seated section</legend>
          <div class="grid3">
            <SectionField name="id" label="Id" hint="letters, digits, - or _" />
            <SectionField name="name" label="Name" />
            <SectionField name="price" label="Price" type="number" step="0.01" min={0} />
            <SectionField name="rowCount" label="Rows" type="number" min={1} max={200} errorFor="rows" />
            <SectionField name="seatsPerRow" label="Seats per row" type="number" min={1} max={500} />
          </div>
          <button type="button" class="link remove-section">
            Remove this section
          </button>
        </fieldset>
      </template>
      <template id="ga-template">
        <fieldset class="section-box" data-kind="ga">
          <legend>Standing (GA) section</legend>
          <div class="grid3">
            <SectionField name="id" label="Id" hint="letters, digits, - or _" />
            <SectionField name="name" label="Name" />
            <SectionField name="price" label="Price" type="number" step="0.01" min={0} />
            <SectionField name="capacity" label="Capacity" type="number" min={1} />
            <SectionField name="shards" label="Shards (optional)" type="number" min={1} max={64} />
          </div>
          <button type="button" class="link remove-section">
            Remove this section
          </button>
        </fieldset>
      </template>
    </Layout>
  );
}

/**
 * One input of a section box; organizer.js numbers the ids and paths (`sections.<i>.<name>`) when it adds
 * the box. `errorFor` names the API field whose errors this input shows when it differs from `name` (the
 * rows the API sees are built from the row count and seats per row).
 */
function SectionField(props: {
  name: string;
  label: string;
  type?: string;
  step?: string;
  min?: number;
  max?: number;
  hint?: string;
  errorFor?: string;
}) {
  return (
    <div class="field">
      <label>
        <span class="label">{props.label}</span>
        <input data-name={props.name} type={props.type ?? "text"} step={props.step} min={props.min} max={props.max} />
      </label>
      {props.hint ? <p class="muted small">{props.hint}</p> : null}
      <p class="field-error" data-error-name={props.errorFor ?? props.name} />
    </div>
  );
}

/** `/organizer/events/:id`: the live sale (sale.js polls the stats and availability APIs). */
/** Live figures: a label each, and the element the page script fills in (by id). */
function Figures({ items }: { items: [label: string, id: string][] }) {
  return (
    <dl class="figures">
      {items.map(([label, id]) => (
        <div>
          <dt>{label}</dt>
          <dd id={id}>–</dd>
        </div>
      ))}
    </dl>
  );
}

export function LiveSalePage({ event }: { event: EventDoc }) {
  return (
    <Layout
      title={`Live · ${event.name}`}
      area="organizer"
      scripts={["sale.js", "after-sale.js"]}
      data={{ "event-id": event.id, currency: event.currency }}
    >
      <p class="crumbs">
        <a href="/organizer">Console</a> · <a href={`/events/${event.id}`}>Public page</a>
      </p>
      <h1>{event.name}</h1>
      <p class="muted">
        {event.venue} · starts <time datetime={event.startsAt}>{when(event.startsAt)}</time> · sale opens{" "}
        <time datetime={event.saleStartsAt}>{when(event.saleStartsAt)}</time> · capacity {event.capacity} · waiting room{" "}
        {event.waitingRoom.enabled ? `on (up to ${event.waitingRoom.admitPerMinute}/min)` : "off"}
      </p>
      <p id="sale-status" class="muted small" aria-live="off">
        Connecting…
      </p>
      <section aria-labelledby="inv-h" class="panel">
        <h2 id="inv-h">Inventory</h2>
        <Figures
          items={[
            ["Sold", "sold"],
            ["Held", "held"],
            ["Available", "available"],
            ["Revenue", "revenue"],
          ]}
        />
        <div class="stack" aria-hidden="true">
          <span class="stack-sold" id="bar-sold" />
          <span class="stack-held" id="bar-held" />
        </div>
        <table class="sections">
          <caption>By section</caption>
          <thead>
            <tr>
              <th scope="col">Section</th>
              <th scope="col">Price</th>
              <th scope="col">Sold</th>
              <th scope="col">Held</th>
              <th scope="col">Available</th>
            </tr>
          </thead>
          <tbody>
            {event.sections.map((s) => (
              <tr data-section={s.id}>
                <th scope="row">{s.name}</th>
                <td>{money(s.price, event.currency)}</td>
                <td data-col="sold">–</td>
                <td data-col="held">–</td>
                <td data-col="available">–</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="room-h" class="panel">
        <h2 id="room-h">Waiting room</h2>
        <Figures
          items={[
            ["Waiting", "room-length"],
            ["Admission rate", "room-rate"],
          ]}
        />
      </section>
      <section aria-labelledby="funnel-h" class="panel">
        <h2 id="funnel-h">Funnel</h2>
        <ol class="funnel" id="funnel">
          {(["joined", "admitted", "held", "paid"] as const).map((k) => (
            <li data-step={k}>
              <span class="funnel-label">{k}</span>
              <span class="funnel-bar" aria-hidden="true">
                <span class="funnel-fill" />
              </span>
              <span class="funnel-value">–</span>
            </li>
          ))}
        </ol>
      </section>
      <section aria-labelledby="opm-h" class="panel">
        <h2 id="opm-h">Orders per minute</h2>
        <p>
          Last minute: <strong id="opm-now">–</strong>
        </p>
        <div class="spark" id="opm" role="img" aria-label="Orders per minute, last 30 minutes" />
      </section>
      <section aria-labelledby="checkin-h" class="panel">
        <h2 id="checkin-h">Check-in</h2>
        <form id="checkin-form" novalidate>
          <div class="field">
            <label for="checkin-code">Ticket code (scanned from the QR code)</label>
            <input id="checkin-code" name="code" autocomplete="off" spellcheck={false} required />
          </div>
          <button type="submit">Check in</button>
        </form>
        <p id="checkin-result" role="status" aria-live="polite" />
        <p>
          <button type="button" id="checkin-csv">
            Download the check-in list (CSV)
          </button>{" "}
          <span id="checkin-csv-status" class="muted small" role="status" />
        </p>
      </section>
      <section aria-labelledby="refund-h" class="panel">
        <h2 id="refund-h">Refund an order</h2>
        <form id="refund-form" novalidate>
          <div class="field">
            <label for="refund-order">Order id</label>
            <input id="refund-order" name="order" autocomplete="off" spellcheck={false} required />
          </div>
          <div class="field">
            <label for="refund-tickets">Ticket ids (optional, separated by commas; empty: the whole order)</label>
            <input id="refund-tickets" name="tickets" autocomplete="off" spellcheck={false} />
          </div>
          <div class="field">
            <label for="refund-reason">Reason (optional)</label>
            <input id="refund-reason" name="reason" maxlength={200} />
          </div>
          <button type="submit">Refund</button>
        </form>
        <p id="refund-result" role="status" aria-live="polite" />
      </section>
      <section aria-labelledby="cancel-h" class="panel">
        <h2 id="cancel-h">Cancel the event</h2>
        <p class="muted small">Stops the sale at once and refunds every paid order in the background. It cannot be undone.</p>
        <form id="cancel-form" novalidate>
          <label class="radio">
            <input type="checkbox" id="cancel-confirm" /> I want to cancel {event.name} and refund every buyer
          </label>
          <button type="submit" class="danger">
            Cancel the event
          </button>
        </form>
        <p id="cancel-result" role="status" aria-live="polite" />
      </section>
    </Layout>
  );
}
