CREATE TABLE `analytics_events` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`event_id` text NOT NULL,
	`at` text NOT NULL,
	`user_id` text,
	`quantity` integer DEFAULT 0 NOT NULL,
	`amount` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `analytics_events_at_idx` ON `analytics_events` (`at`);--> statement-breakpoint
CREATE INDEX `analytics_events_event_idx` ON `analytics_events` (`event_id`,`at`);--> statement-breakpoint
CREATE TABLE `analytics_minute` (
	`event_id` text NOT NULL,
	`minute` text NOT NULL,
	`kind` text NOT NULL,
	`count` integer NOT NULL,
	`quantity` integer NOT NULL,
	`amount` integer NOT NULL,
	PRIMARY KEY(`event_id`, `minute`, `kind`)
);
--> statement-breakpoint
CREATE TABLE `reconciliation_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`ran_at` text NOT NULL,
	`event_id` text NOT NULL,
	`sold_in_inventory` integer NOT NULL,
	`stored_in_shards` integer NOT NULL,
	`missing` text NOT NULL,
	`extra` text NOT NULL,
	`duplicated` text NOT NULL
);
