-- Services (MSP) tables as the models stood at revision 0011, frozen here so a
-- later model change needs its own revision (the migrations test compares).

CREATE TABLE rate_cards (
	book_id UUID NOT NULL, 
	id UUID NOT NULL, 
	name TEXT NOT NULL, 
	currency TEXT NOT NULL, 
	customer_id UUID, 
	rates JSONB DEFAULT '{}'::jsonb NOT NULL, 
	default_rate NUMERIC, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_rate_cards PRIMARY KEY (book_id, id), 
	CONSTRAINT fk_rate_cards_book_id_customer_id_customers FOREIGN KEY(book_id, customer_id) REFERENCES customers (book_id, id)
);

CREATE TABLE contracts (
	book_id UUID NOT NULL, 
	id UUID NOT NULL, 
	customer_id UUID NOT NULL, 
	type TEXT NOT NULL, 
	currency TEXT NOT NULL, 
	start_date DATE NOT NULL, 
	end_date DATE, 
	interval TEXT DEFAULT 'month' NOT NULL, 
	status TEXT DEFAULT 'active' NOT NULL, 
	terms JSONB DEFAULT '{}'::jsonb NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_contracts PRIMARY KEY (book_id, id), 
	CONSTRAINT fk_contracts_book_id_customer_id_customers FOREIGN KEY(book_id, customer_id) REFERENCES customers (book_id, id), 
	CONSTRAINT ck_contracts_type CHECK (type in ('time_and_materials', 'retainer', 'fixed_fee', 'managed_services')), 
	CONSTRAINT ck_contracts_status CHECK (status in ('active', 'closed')), 
	CONSTRAINT ck_contracts_dates CHECK (end_date is null or end_date > start_date)
);

CREATE INDEX ix_contracts_customer_id_book_id ON contracts (customer_id, book_id);

CREATE TABLE contract_counts (
	book_id UUID NOT NULL, 
	contract_id UUID NOT NULL, 
	date DATE NOT NULL, 
	quantity INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_contract_counts PRIMARY KEY (book_id, contract_id, date), 
	CONSTRAINT fk_contract_counts_book_id_contract_id_contracts FOREIGN KEY(book_id, contract_id) REFERENCES contracts (book_id, id), 
	CONSTRAINT ck_contract_counts_quantity CHECK (quantity >= 0)
);

CREATE TABLE contract_milestones (
	book_id UUID NOT NULL, 
	contract_id UUID NOT NULL, 
	name TEXT NOT NULL, 
	amount NUMERIC NOT NULL, 
	completed_on DATE, 
	invoice_id UUID, 
	CONSTRAINT pk_contract_milestones PRIMARY KEY (book_id, contract_id, name), 
	CONSTRAINT fk_contract_milestones_book_id_contract_id_contracts FOREIGN KEY(book_id, contract_id) REFERENCES contracts (book_id, id)
);

CREATE TABLE contract_periods (
	book_id UUID NOT NULL, 
	contract_id UUID NOT NULL, 
	period_start DATE NOT NULL, 
	period_end DATE NOT NULL, 
	invoice_id UUID, 
	carried_in_minutes INTEGER DEFAULT '0' NOT NULL, 
	drawn_minutes INTEGER DEFAULT '0' NOT NULL, 
	closed BOOLEAN DEFAULT 'false' NOT NULL, 
	carried_out_minutes INTEGER DEFAULT '0' NOT NULL, 
	expired_minutes INTEGER DEFAULT '0' NOT NULL, 
	CONSTRAINT pk_contract_periods PRIMARY KEY (book_id, contract_id, period_start), 
	CONSTRAINT fk_contract_periods_book_id_contract_id_contracts FOREIGN KEY(book_id, contract_id) REFERENCES contracts (book_id, id)
);

CREATE TABLE time_entries (
	book_id UUID NOT NULL, 
	id UUID NOT NULL, 
	contract_id UUID NOT NULL, 
	customer_id UUID NOT NULL, 
	person TEXT NOT NULL, 
	date DATE NOT NULL, 
	start_minute SMALLINT, 
	end_minute SMALLINT, 
	minutes INTEGER NOT NULL, 
	rounded_minutes INTEGER NOT NULL, 
	role TEXT NOT NULL, 
	billable TEXT NOT NULL, 
	after_hours BOOLEAN DEFAULT 'false' NOT NULL, 
	notes TEXT DEFAULT '' NOT NULL, 
	ticket TEXT, 
	rate NUMERIC NOT NULL, 
	rate_source TEXT NOT NULL, 
	amount NUMERIC NOT NULL, 
	status TEXT DEFAULT 'draft' NOT NULL, 
	drawn_minutes INTEGER DEFAULT '0' NOT NULL, 
	overage_minutes INTEGER DEFAULT '0' NOT NULL, 
	written_down NUMERIC DEFAULT '0' NOT NULL, 
	accrued_amount NUMERIC DEFAULT '0' NOT NULL, 
	invoice_id UUID, 
	invoice_line SMALLINT, 
	external_id TEXT, 
	adjusts UUID, 
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
	CONSTRAINT pk_time_entries PRIMARY KEY (book_id, id), 
	CONSTRAINT fk_time_entries_book_id_contract_id_contracts FOREIGN KEY(book_id, contract_id) REFERENCES contracts (book_id, id), 
	CONSTRAINT fk_time_entries_book_id_adjusts_time_entries FOREIGN KEY(book_id, adjusts) REFERENCES time_entries (book_id, id), 
	CONSTRAINT ck_time_entries_minutes CHECK ((minutes >= 0 and rounded_minutes >= 0) or adjusts is not null), 
	CONSTRAINT ck_time_entries_status CHECK (status in ('draft', 'approved', 'invoiced')), 
	CONSTRAINT ck_time_entries_billable CHECK (billable in ('billable', 'no_charge', 'do_not_bill'))
);

CREATE INDEX ix_time_entries_contract_id_book_id_status ON time_entries (contract_id, book_id, status);

CREATE INDEX ix_time_entries_person_book_id_date ON time_entries (person, book_id, date);
