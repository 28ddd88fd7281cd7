CREATE TABLE `dead_letters` (
	`id` text PRIMARY KEY NOT NULL,
	`queue` text NOT NULL,
	`body` text NOT NULL,
	`attempts` integer NOT NULL,
	`first_failed_at` text NOT NULL,
	`last_error` text,
	`status` text DEFAULT 'dead' NOT NULL,
	`replayed_at` text
);
--> statement-breakpoint
CREATE INDEX `dead_letters_status_idx` ON `dead_letters` (`status`,`queue`);--> statement-breakpoint
CREATE TABLE `events` (
	`id` text PRIMARY KEY NOT NULL,
	`organizer_id` text NOT NULL,
	`name` text NOT NULL,
	`venue` text NOT NULL,
	`starts_at` text NOT NULL,
	`sale_starts_at` text NOT NULL,
	`currency` text NOT NULL,
	`per_customer_limit` integer NOT NULL,
	`hold_seconds` integer NOT NULL,
	`waiting_room_enabled` integer NOT NULL,
	`admit_per_minute` integer NOT NULL,
	`sections` text NOT NULL,
	`min_price` integer NOT NULL,
	`capacity` integer NOT NULL,
	`sold_out` integer DEFAULT false NOT NULL,
	`version` integer DEFAULT 1 NOT NULL,
	`created_at` text NOT NULL,
	`updated_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `events_starts_at_idx` ON `events` (`starts_at`);--> statement-breakpoint
CREATE INDEX `events_organizer_idx` ON `events` (`organizer_id`);