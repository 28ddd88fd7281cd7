CREATE TABLE `cron_state` (
	`k` text PRIMARY KEY NOT NULL,
	`v` text NOT NULL
);
