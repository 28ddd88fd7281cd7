CREATE TABLE `mail_outbox` (
	`order_id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`subject` text NOT NULL,
	`body` text NOT NULL,
	`created_at` text NOT NULL,
	`sent_at` text
);
--> statement-breakpoint
CREATE TABLE `orders` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`event_id` text NOT NULL,
	`section_id` text NOT NULL,
	`hold_id` text NOT NULL,
	`seats` text NOT NULL,
	`quantity` integer NOT NULL,
	`total` integer NOT NULL,
	`currency` text NOT NULL,
	`paid_at` text NOT NULL,
	`payment_provider` text NOT NULL,
	`charge_id` text NOT NULL,
	`trace_id` text,
	`stored_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `orders_user_paid_idx` ON `orders` (`user_id`,`paid_at`);--> statement-breakpoint
CREATE INDEX `orders_event_idx` ON `orders` (`event_id`);--> statement-breakpoint
CREATE TABLE `tickets` (
	`id` text PRIMARY KEY NOT NULL,
	`order_id` text NOT NULL,
	`seat` text NOT NULL,
	`code` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `tickets_order_idx` ON `tickets` (`order_id`);